"""Portal items: notebook files with versions, and multipart uploads in progress."""

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
