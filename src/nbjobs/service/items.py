"""Portal items: upload, read, update and delete stored notebooks, visible to their owner and admins."""

from __future__ import annotations

import dataclasses
import uuid

from nbjobs.clock import Clock
from nbjobs.errors import InvalidRequest, ItemNotFound, PayloadTooLarge, PermissionDenied
from nbjobs.execution.notebooks import read_notebook
from nbjobs.models import Principal
from nbjobs.store.items import Item, ItemStore

NOTEBOOK_TYPE = "Notebook"
NOTEBOOK_TYPE_KEYWORDS = ("Notebook", "Jupyter", "Python")


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

    def __init__(self, store: ItemStore, clock: Clock, *, max_bytes: int) -> None:
        self.store = store
        self.clock = clock
        self.max_bytes = max_bytes

    def add(self, who: Principal, owner: str, data: bytes, *, type: str, fields: ItemFields) -> Item:
        """Store a validated notebook as a new item of ``owner`` (the caller, or anyone for an admin)."""
        if not who.is_admin and who.username != owner:
            raise PermissionDenied("You do not have permissions to add items for another user.")
        if (type or "").lower() != NOTEBOOK_TYPE.lower():
            raise InvalidRequest(f"Unsupported item type {type!r}: this server stores only 'Notebook' items.")
        self._check(data)
        now = self.clock()
        filename = fields.filename or "notebook.ipynb"
        item = Item(
            item_id=new_item_id(),
            owner=owner,
            title=fields.title or filename.rsplit(".", 1)[0],
            type=NOTEBOOK_TYPE,
            created=now,
            modified=now,
            size=len(data),
            filename=filename,
            description=fields.description or "",
            snippet=fields.snippet or "",
            tags=fields.tags or (),
            type_keywords=fields.type_keywords or NOTEBOOK_TYPE_KEYWORDS,
        )
        self.store.add(item, data)
        return item

    def get(self, who: Principal, item_id: str) -> Item:
        item = self.store.get(item_id) if item_id else None
        if item is None or not who.can_see(item.owner):
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
            self._check(data)
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
        return self.store.list(owner) if who.can_see(owner) else []

    def write_back(self, item_id: str, data: bytes) -> bool:
        """Replace an item's notebook on behalf of the server (executeNotebook updatePortalItem)."""
        item = self.store.get(item_id)
        if item is None:
            return False
        self.store.save(dataclasses.replace(item, size=len(data), modified=self.clock()), data)
        return True

    def _check(self, data: bytes) -> None:
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"The file is larger than the {self.max_bytes} bytes this server accepts.")
        read_notebook(data)
