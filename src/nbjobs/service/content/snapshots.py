"""Snapshots: kept versions of a notebook item (the ArcGIS 10.9 snapshots API, the app's "Versions", and
every save from JupyterLab). Visible to the item's owner and admins only, as the item is; the limit
rules are in docs/snapshots.md."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Sequence

from nbjobs.clock import Clock
from nbjobs.errors import InvalidRequest, SnapshotLimitReached, SnapshotNotFound
from nbjobs.models.accounts import Principal
from nbjobs.models.items import Item, Snapshot
from nbjobs.models.portal_stores import ItemStore, SnapshotStore
from nbjobs.service.content.items import NOTEBOOK_TYPE, ItemFields, ItemService

MAX_NAME = 255  # the column; also what a new item's title may be (convertToItem)
MAX_DESCRIPTION = 4000
MAX_SOURCE = 64
MAX_KEYS = 100  # resourceKeys of one delete


def new_resource_key() -> str:
    """A fresh resource key, shaped as ArcGIS's: ``snapshot-<32 hex>.json``."""
    return f"snapshot-{uuid.uuid4().hex}.json"


def parse_resource_keys(raw: str) -> list[str]:
    """``resourceKeys`` of delete: a JSON list of keys, or one bare key (what the ``arcgis`` client sends)."""
    text = (raw or "").strip()
    if not text:
        raise InvalidRequest("'resourceKeys' is required: a JSON list of snapshot resource keys.")
    if not text.startswith(("[", "{")):
        return [text]
    try:
        keys = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidRequest("Invalid value for 'resourceKeys': not valid JSON.") from None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k.strip() for k in keys):
        raise InvalidRequest("Invalid value for 'resourceKeys': expected a JSON list of resource keys.")
    if len(keys) > MAX_KEYS:
        raise InvalidRequest(f"Invalid value for 'resourceKeys': at most {MAX_KEYS} keys at a time.")
    return list(dict.fromkeys(k.strip() for k in keys))


def _text(name: str, value: str, limit: int, *, required: bool = False) -> str:
    value = (value or "").strip()
    if required and not value:
        raise InvalidRequest(f"'{name}' is required.")
    if len(value) > limit:
        raise InvalidRequest(f"Invalid value for '{name}': at most {limit} characters.")
    return value


def _runtime(data: bytes) -> tuple[str, str]:
    """The notebook's ``esriNotebookRuntime`` (name, version), what ArcGIS lists with each snapshot."""
    try:
        meta = json.loads(data).get("metadata", {}).get("esriNotebookRuntime", {})
        name, version = meta.get("notebookRuntimeName", ""), meta.get("notebookRuntimeVersion", "")
    except (ValueError, RecursionError, AttributeError):
        return "", ""
    return (str(name)[:MAX_NAME], str(version)[:64]) if isinstance(name, str | int | float) else ("", "")


class SnapshotService:
    """Every operation first finds the item as ItemService does, so another user's item answers exactly
    like an unknown one (ItemNotFound); only then is the resource key looked at."""

    def __init__(
        self,
        store: SnapshotStore,
        items: ItemService,
        item_store: ItemStore,
        clock: Clock,
        *,
        limit: Callable[[], int],
    ) -> None:
        self.store = store
        self.items = items
        self.item_store = item_store
        self.clock = clock
        self.limit = limit  # maxSnapshotsPerNotebookItem, read at each use (admins change it live)

    def list(self, who: Principal, item_id: str) -> list[Snapshot]:
        """The item's snapshots, newest first."""
        self.items.get(who, item_id)
        return self.store.list(item_id)

    def create(
        self,
        who: Principal,
        item_id: str,
        *,
        name: str,
        description: str = "",
        notebook: bytes | None = None,
        private_access: bool = False,
        source: str = "api",
    ) -> Snapshot:
        """A manual snapshot of the item's current notebook (or of ``notebook``, validated as an upload).
        Refused, with nothing written, when manual snapshots already fill the limit; automatic ones give
        way instead (oldest first)."""
        _item, current = self.items.data(who, item_id)
        name = _text("name", name, MAX_NAME, required=True)
        description = _text("description", description, MAX_DESCRIPTION)
        if notebook is not None:
            self.items.check(notebook)
        limit = self.limit()
        if sum(1 for s in self.store.list(item_id) if not s.automatic) >= limit:
            raise SnapshotLimitReached(limit)
        data = current if notebook is None else notebook
        snapshot = self._keep(item_id, data, name, description, automatic=False, source=source,
                              private_access=private_access)  # fmt: skip
        self._prune(item_id, keep_newest_automatic=False)
        return snapshot

    def get(self, who: Principal, item_id: str, resource_key: str) -> tuple[Snapshot, bytes]:
        """A snapshot and its notebook (download)."""
        self.items.get(who, item_id)
        return self._found(item_id, resource_key)

    def restore(
        self,
        who: Principal,
        item_id: str,
        resource_key: str,
        *,
        preserve: bool = True,
        title: str = "",
        description: str = "",
    ) -> Item:
        """Make the snapshot the item's content; with ``preserve``, the content it replaces is kept first
        as an automatic snapshot (so a restore is never refused at the limit, and never loses anything)."""
        item, current = self.items.data(who, item_id)
        snapshot, data = self._found(item_id, resource_key)
        title = _text("title", title, MAX_NAME)
        description = _text("description", description, MAX_DESCRIPTION)
        if preserve:
            name = title or f"Before restoring “{snapshot.name}”"[:MAX_NAME]
            self._keep(item_id, current, name, description, automatic=True, source="restore")
        updated = self._write(item, data)
        if preserve:
            self._prune(item_id, keep_newest_automatic=True)
        return updated

    def delete(self, who: Principal, item_id: str, resource_keys: Sequence[str]) -> int:
        """Delete these snapshots; all or none (an unknown key refuses the whole request)."""
        self.items.get(who, item_id)
        if not resource_keys:
            raise InvalidRequest("'resourceKeys' is required: a JSON list of snapshot resource keys.")
        known = {s.resource_key for s in self.store.list(item_id)}
        missing = [k for k in resource_keys if k not in known]
        if missing:
            raise SnapshotNotFound(missing[0])
        return self.store.delete(item_id, resource_keys)

    def convert(self, who: Principal, item_id: str, resource_key: str, title: str) -> Item:
        """A new notebook item of the caller holding the snapshot (convertToItem)."""
        item = self.items.get(who, item_id)
        _snapshot, data = self._found(item_id, resource_key)
        title = _text("notebookTitle", title, MAX_NAME, required=True)
        fields = ItemFields(title=title, filename=item.filename or None)
        return self.items.add(who, who.username, data, type=NOTEBOOK_TYPE, fields=fields)

    def save_version(self, who: Principal, item_id: str, data: bytes, *, source: str) -> Item:
        """Save ``data`` as the item's new content (a save in JupyterLab): validated as an upload, then the
        current content is kept as an automatic snapshot, then ``data`` is written; in that order, so
        nothing is lost. Automatic snapshots past the limit go, oldest first; a save is never refused
        for the limit. ItemNotFound when the item is gone (or not the caller's)."""
        item, current = self.items.data(who, item_id)
        self.items.check(data)
        label = _text("source", source, MAX_SOURCE) or "a save"
        self._keep(item_id, current, f"Before save from {label}", "", automatic=True, source=label)
        updated = self._write(item, data)
        self._prune(item_id, keep_newest_automatic=True)
        return updated

    # -- the rest ----------------------------------------------------------------------------------------

    def _found(self, item_id: str, resource_key: str) -> tuple[Snapshot, bytes]:
        key = (resource_key or "").strip()
        if not key:
            raise InvalidRequest("'resourceKey' is required: the key of one of the item's snapshots.")
        snapshot = self.store.get(item_id, key)
        data = self.store.get_data(item_id, key) if snapshot is not None else None
        if snapshot is None or data is None:
            raise SnapshotNotFound(key[:MAX_NAME])
        return snapshot, data

    def _keep(
        self,
        item_id: str,
        data: bytes,
        name: str,
        description: str,
        *,
        automatic: bool,
        source: str,
        private_access: bool = False,
    ) -> Snapshot:
        runtime_name, runtime_version = _runtime(data)
        snapshot = Snapshot(
            resource_key=new_resource_key(),
            item_id=item_id,
            name=name,
            created=self.clock(),
            size=len(data),
            description=description,
            automatic=automatic,
            source=source[:MAX_SOURCE],
            private_access=private_access,
            runtime_name=runtime_name,
            runtime_version=runtime_version,
        )
        self.store.add(snapshot, data)
        return snapshot

    def _write(self, item: Item, data: bytes) -> Item:
        updated = dataclasses.replace(item, size=len(data), modified=self.clock())
        self.item_store.save(updated, data)
        return updated

    def _prune(self, item_id: str, *, keep_newest_automatic: bool) -> None:
        """Drop automatic snapshots, oldest first, while the item holds more than the limit; manual ones
        are never dropped, and after a save the snapshot it just made is kept even past the limit."""
        snapshots = self.store.list(item_id)  # newest first
        excess = len(snapshots) - self.limit()
        automatic = [s for s in snapshots if s.automatic]
        if keep_newest_automatic:
            automatic = automatic[1:]
        drop = [s.resource_key for s in reversed(automatic)][: max(excess, 0)]
        if drop:
            self.store.delete(item_id, drop)
