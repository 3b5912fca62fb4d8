"""Portal items: upload (whole or in parts), read, update and delete stored notebooks, visible to their
owner and admins."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from nbjobs.clock import Clock
from nbjobs.errors import InvalidRequest, ItemNotFound, PayloadTooLarge, PermissionDenied
from nbjobs.execution.notebook_io import read_notebook
from nbjobs.models.accounts import Principal
from nbjobs.models.items import Item, Upload
from nbjobs.models.portal_stores import ItemStore
from nbjobs.service.authz import may_see

NOTEBOOK_TYPE = "Notebook"
NOTEBOOK_TYPE_KEYWORDS = ("Notebook", "Jupyter", "Python")
MAX_PARTS = 10_000  # ArcGIS accepts partNum 1..10000
UPLOAD_TTL_MS = 24 * 60 * 60 * 1000  # an upload not committed within a day is abandoned


def new_item_id() -> str:
    """A fresh portal item id: 32 lowercase hex characters."""
    return uuid.uuid4().hex


@dataclasses.dataclass(frozen=True)
class ItemFields:
    """Editable metadata; None leaves a field as it is."""

    title: str | None = None
    description: str | None = None
    snippet: str | None = None
    tags: tuple[str, ...] | None = None
    type_keywords: tuple[str, ...] | None = None
    filename: str | None = None


class ItemService:
    """Others' items answer exactly like unknown ones; only notebooks are accepted."""

    def __init__(
        self, store: ItemStore, clock: Clock, *, max_bytes: int, upload_ttl_ms: int = UPLOAD_TTL_MS
    ) -> None:
        self.store = store
        self.clock = clock
        self.max_bytes = max_bytes
        self.upload_ttl_ms = upload_ttl_ms

    def add(self, who: Principal, owner: str, data: bytes, *, type: str, fields: ItemFields) -> Item:
        """Store a validated notebook as a new item of ``owner`` (the caller, or anyone for an admin)."""
        self._check_add(who, owner, type)
        self.check(data)
        item = self._new_item(new_item_id(), owner, len(data), fields)
        self.store.add(item, data)
        return item

    # -- uploads in parts: addItem multipart=true, addPart, commit, status ------------------------------

    def begin_upload(self, who: Principal, owner: str, *, type: str, fields: ItemFields) -> str:
        """Start an upload in parts of a new item of ``owner``; its id, not yet an item until committed."""
        self._check_add(who, owner, type)
        now = self.clock()
        self.store.drop_uploads_before(now - self.upload_ttl_ms)
        item_id = new_item_id()
        self.store.add_upload(Upload(item_id, owner, now, _properties(fields)))
        return item_id

    def add_part(self, who: Principal, item_id: str, part_num: int, data: bytes) -> None:
        """Store part ``part_num`` (1-based; sending a number again replaces that part)."""
        if not 1 <= part_num <= MAX_PARTS:
            raise InvalidRequest(f"Invalid value for 'partNum': {part_num} (must be 1 to {MAX_PARTS}).")
        self._upload(who, item_id)
        others = sum(size for num, size in self.store.part_sizes(item_id).items() if num != part_num)
        if others + len(data) > self.max_bytes:
            raise PayloadTooLarge(f"The file is larger than the {self.max_bytes} bytes this server accepts.")
        if not self.store.put_part(item_id, part_num, data):
            raise ItemNotFound(item_id)

    def commit_upload(self, who: Principal, item_id: str, *, type: str | None, fields: ItemFields) -> Item:
        """Join the parts, validate the notebook and create the item; on any error nothing changes."""
        upload = self._upload(who, item_id)
        if type is not None and type.lower() != NOTEBOOK_TYPE.lower():
            raise InvalidRequest(f"Unsupported item type {type!r}: this server stores only 'Notebook' items.")
        parts = sorted(self.store.part_sizes(item_id))
        if not parts:
            raise InvalidRequest("No part was uploaded: send the file with addPart before commit.")
        missing = sorted(set(range(1, parts[-1] + 1)) - set(parts))
        if missing:
            raise InvalidRequest(f"Part {missing[0]} is missing: parts must be numbered 1 to {parts[-1]}.")
        data = self.store.upload_data(item_id)
        self.check(data)
        merged = dataclasses.replace(
            _fields(upload.properties),
            **{k: v for k, v in dataclasses.asdict(fields).items() if v is not None},
        )
        item = self._new_item(item_id, upload.owner, len(data), merged)
        if not self.store.finish_upload(item, data):
            raise ItemNotFound(item_id)  # committed by a concurrent request
        return item

    def upload_status(self, who: Principal, item_id: str) -> str:
        """``partial`` while an upload awaits its commit, ``completed`` for an item."""
        upload = self.store.get_upload(item_id) if item_id else None
        if upload is not None and may_see(who, upload.owner) and not self._expired(upload):
            return "partial"
        self.get(who, item_id)
        return "completed"

    def _upload(self, who: Principal, item_id: str) -> Upload:
        upload = self.store.get_upload(item_id) if item_id else None
        if upload is None or not may_see(who, upload.owner):
            raise ItemNotFound(item_id)
        if self._expired(upload):
            self.store.drop_upload(item_id)
            raise ItemNotFound(item_id)
        return upload

    def _expired(self, upload: Upload) -> bool:
        return self.clock() - upload.created > self.upload_ttl_ms

    # -- the rest ----------------------------------------------------------------------------------------

    def _check_add(self, who: Principal, owner: str, type: str) -> None:
        if not may_see(who, owner):
            raise PermissionDenied("You do not have permissions to add items for another user.")
        if (type or "").lower() != NOTEBOOK_TYPE.lower():
            raise InvalidRequest(f"Unsupported item type {type!r}: this server stores only 'Notebook' items.")

    def _new_item(self, item_id: str, owner: str, size: int, fields: ItemFields) -> Item:
        now = self.clock()
        filename = fields.filename or "notebook.ipynb"
        return Item(
            item_id=item_id,
            owner=owner,
            title=fields.title or filename.rsplit(".", 1)[0],
            type=NOTEBOOK_TYPE,
            created=now,
            modified=now,
            size=size,
            filename=filename,
            description=fields.description or "",
            snippet=fields.snippet or "",
            tags=fields.tags or (),
            type_keywords=fields.type_keywords or NOTEBOOK_TYPE_KEYWORDS,
        )

    def get(self, who: Principal, item_id: str) -> Item:
        item = self.store.get(item_id) if item_id else None
        if item is None or not may_see(who, item.owner):
            raise ItemNotFound(item_id)
        return item

    def data(self, who: Principal, item_id: str) -> tuple[Item, bytes]:
        item = self.get(who, item_id)
        data = self.store.get_data(item_id)
        if data is None:
            raise ItemNotFound(item_id)
        return item, data

    def update(self, who: Principal, item_id: str, fields: ItemFields, data: bytes | None = None) -> Item:
        """Change metadata and, when ``data`` is given, the notebook itself."""
        item = self.get(who, item_id)
        if data is not None:
            self.check(data)
        changes = {k: v for k, v in dataclasses.asdict(fields).items() if v is not None}
        if data is not None:
            changes["size"] = len(data)
        updated = dataclasses.replace(item, **changes, modified=self.clock())
        self.store.save(updated, data)
        return updated

    def delete(self, who: Principal, item_id: str) -> None:
        self.get(who, item_id)
        self.store.delete(item_id)

    def list(self, who: Principal, owner: str) -> list[Item]:
        """Items of ``owner`` that ``who`` may see."""
        return self.store.list(owner) if may_see(who, owner) else []

    def write_back(self, item_id: str, data: bytes) -> bool:
        """Replace an item's notebook on behalf of the server (executeNotebook updatePortalItem)."""
        item = self.store.get(item_id)
        if item is None:
            return False
        self.store.save(dataclasses.replace(item, size=len(data), modified=self.clock()), data)
        return True

    def check(self, data: bytes) -> None:
        """What a notebook must be to be stored: within the size limit (PayloadTooLarge), a valid notebook
        (InvalidNotebook). Snapshots and saves from JupyterLab are held to the same."""
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"The file is larger than the {self.max_bytes} bytes this server accepts.")
        read_notebook(data)


def _properties(fields: ItemFields) -> dict[str, Any]:
    """ItemFields as JSON for the store (tuples become lists); ``_fields`` reads them back."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(fields).items()}


def _fields(properties: dict[str, Any]) -> ItemFields:
    names = {f.name for f in dataclasses.fields(ItemFields)}
    values: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in properties.items() if k in names
    }
    return ItemFields(**values)
