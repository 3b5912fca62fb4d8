"""Snapshot stores (in-memory fake and SQL: SQLite, PostgreSQL) agree on snapshots of items: round trips,
newest-first order (ties by insertion), per-item keys, deletes, and the cascade with the item."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from nbjobs.models.items import Item, Snapshot
from nbjobs.models.portal_stores import ItemStore, SnapshotStore
from nbjobs.store.items import SqlItemStore
from nbjobs.store.memory.items import MemoryItemStore
from nbjobs.store.memory.snapshots import MemorySnapshotStore
from nbjobs.store.snapshots import SqlSnapshotStore
from tests.unit.contracts.common import DUPLICATE, assert_implements

A, B = "a" * 32, "b" * 32


@pytest.fixture
def stores(engine: Engine | None) -> tuple[ItemStore, SnapshotStore]:
    if engine is None:
        items = MemoryItemStore()
        return items, MemorySnapshotStore(items)
    return SqlItemStore(engine), SqlSnapshotStore(engine)


@pytest.fixture
def snaps(stores) -> SnapshotStore:
    items, snapshots = stores
    for item_id in (A, B):
        items.add(Item(item_id, "alice", "t", "Notebook", 1, 1), b"{}")
    return snapshots


def snap(key: str, item_id: str = A, created: int = 100, **fields) -> Snapshot:
    return Snapshot(f"snapshot-{key}.json", item_id, f"name {key}", created, 3, **fields)


def test_implementations_match_the_protocol():
    assert_implements(SnapshotStore, SqlSnapshotStore, MemorySnapshotStore)


def test_add_then_get_round_trips_every_field_and_the_data(snaps):
    full = Snapshot(
        "snapshot-" + "c" * 32 + ".json", A, "Before save from JupyterLab", 1_716_000_000_001, 9,
        description="<p>why</p>", automatic=True, source="JupyterLab", private_access=True,
        runtime_name="ArcGIS Notebook Python 3 Standard", runtime_version="10.0",
    )  # fmt: skip
    snaps.add(full, b"\x00binary\xff")
    assert snaps.get(A, full.resource_key) == full
    assert snaps.get_data(A, full.resource_key) == b"\x00binary\xff"
    plain = snap("p")
    snaps.add(plain, b"")
    assert snaps.get(A, plain.resource_key) == plain and snaps.get_data(A, plain.resource_key) == b""


def test_a_key_belongs_to_its_item_only(snaps):
    snaps.add(snap("k"), b"x")
    assert snaps.get(B, "snapshot-k.json") is None and snaps.get_data(B, "snapshot-k.json") is None
    assert snaps.delete(B, ["snapshot-k.json"]) == 0
    assert snaps.get(A, "snapshot-k.json") is not None
    assert snaps.get(A, "snapshot-nope.json") is None


def test_a_key_is_taken_once_and_an_unknown_item_takes_none(snaps):
    snaps.add(snap("k"), b"x")
    with pytest.raises(DUPLICATE):
        snaps.add(snap("k", B), b"y")
    with pytest.raises(DUPLICATE):
        snaps.add(snap("orphan", "f" * 32), b"y")
    assert snaps.list("f" * 32) == []


def test_list_is_newest_first_and_same_millisecond_ones_by_insertion(snaps):
    snaps.add(snap("old", created=50), b"1")
    snaps.add(snap("first", created=100), b"2")
    snaps.add(snap("second", created=100), b"3")
    snaps.add(snap("other", B, created=200), b"4")
    assert [s.resource_key for s in snaps.list(A)] == [
        "snapshot-second.json", "snapshot-first.json", "snapshot-old.json",
    ]  # fmt: skip
    assert [s.resource_key for s in snaps.list(B)] == ["snapshot-other.json"]


def test_delete_removes_the_named_ones_of_the_item(snaps):
    for key in ("x", "y", "z"):
        snaps.add(snap(key), key.encode())
    assert snaps.delete(A, ["snapshot-x.json", "snapshot-z.json", "snapshot-none.json"]) == 2
    assert [s.resource_key for s in snaps.list(A)] == ["snapshot-y.json"]
    assert snaps.delete(A, []) == 0


def test_snapshots_go_with_their_item(stores, snaps):
    items, _ = stores
    snaps.add(snap("k"), b"x")
    snaps.add(snap("kept", B), b"y")
    assert items.delete(A)
    assert snaps.list(A) == [] and snaps.get(A, "snapshot-k.json") is None
    assert [s.resource_key for s in snaps.list(B)] == ["snapshot-kept.json"]
