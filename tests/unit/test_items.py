"""ItemService over the in-memory store: validation, limits, visibility."""

from __future__ import annotations

import pytest

from nbjobs.clock import ManualClock
from nbjobs.errors import InvalidNotebook, InvalidRequest, ItemNotFound, PayloadTooLarge, PermissionDenied
from nbjobs.models.accounts import Principal
from nbjobs.service.content.items import ItemFields, ItemService
from nbjobs.store.memory.items import MemoryItemStore
from tests.conftest import notebook_bytes

ALICE, BOB, ADMIN = Principal("alice"), Principal("bob"), Principal("admin", is_admin=True)


@pytest.fixture
def items() -> ItemService:
    return ItemService(MemoryItemStore(), ManualClock(), max_bytes=10_000)


def _add(items: ItemService, who: Principal = ALICE, owner: str = "alice", data: bytes | None = None):
    data = notebook_bytes("trivial.ipynb") if data is None else data
    return items.add(who, owner, data, type="Notebook", fields=ItemFields(title="t"))


def test_add_get_update_delete(items):
    item = _add(items)
    assert len(item.item_id) == 32 and item.owner == "alice" and item.size > 0
    assert items.data(ALICE, item.item_id)[1] == notebook_bytes("trivial.ipynb")
    updated = items.update(ALICE, item.item_id, ItemFields(title="new"), notebook_bytes("raises.ipynb"))
    assert updated.title == "new" and items.data(ALICE, item.item_id)[1] == notebook_bytes("raises.ipynb")
    items.delete(ALICE, item.item_id)
    with pytest.raises(ItemNotFound):
        items.get(ALICE, item.item_id)


def test_visibility(items):
    item = _add(items)
    for call in (lambda: items.get(BOB, item.item_id), lambda: items.delete(BOB, item.item_id),
                 lambda: items.update(BOB, item.item_id, ItemFields(title="x"))):  # fmt: skip
        with pytest.raises(ItemNotFound):
            call()
    assert items.list(BOB, "alice") == []
    assert items.get(ADMIN, item.item_id).owner == "alice"
    with pytest.raises(PermissionDenied):
        _add(items, who=BOB, owner="alice")
    assert _add(items, who=ADMIN, owner="bob").owner == "bob"


def test_rejects_bad_uploads(items):
    with pytest.raises(InvalidNotebook):
        _add(items, data=b"not a notebook")
    with pytest.raises(PayloadTooLarge):
        _add(items, data=b"x" * 10_001)
    with pytest.raises(InvalidRequest):
        items.add(ALICE, "alice", notebook_bytes("trivial.ipynb"), type="CSV", fields=ItemFields())
    assert items.store.list() == []
