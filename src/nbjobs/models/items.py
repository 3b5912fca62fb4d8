"""Portal items: notebook files with versions (snapshots), and multipart uploads in progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    """Metadata of one stored notebook; its bytes are read separately with ``get_data``."""

    item_id: str
    owner: str
    title: str
    type: str
    created: int
    modified: int
    size: int = 0
    filename: str = ""
    description: str = ""
    snippet: str = ""
    tags: tuple[str, ...] = ()
    type_keywords: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Upload:
    """An item being uploaded in parts: not an item (nor visible) until it is committed."""

    item_id: str
    owner: str
    created: int
    properties: dict[str, Any] = field(default_factory=dict)  # item fields sent with addItem


@dataclass(frozen=True)
class Snapshot:
    """One kept version of an item's notebook (ArcGIS "snapshot"); its bytes are read with ``get_data``.

    ``automatic`` ones are the server's (the content a save replaced) and give way to newer ones at the
    item's limit; manual ones (create, the app's "save now") stay until deleted."""

    resource_key: str  # "snapshot-<32 hex>.json", as ArcGIS names them
    item_id: str
    name: str
    created: int
    size: int
    description: str = ""
    automatic: bool = False
    source: str = ""  # what made it: "api", "app", "restore", or the save_version caller's source
    private_access: bool = False  # stored and reported; nbjobs shares no items, so always owner-only
    runtime_name: str = ""  # the notebook's esriNotebookRuntime at creation, when it names one
    runtime_version: str = ""
