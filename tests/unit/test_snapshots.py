"""SnapshotService over the in-memory stores: create (the limit, notebookJSON), restore, delete, convert,
and save_version (the save-back entry point for JupyterLab); visibility as items."""

from __future__ import annotations

import json

import pytest

from nbjobs.clock import ManualClock
from nbjobs.errors import (
    InvalidNotebook,
    InvalidRequest,
    ItemNotFound,
    PayloadTooLarge,
    SnapshotLimitReached,
    SnapshotNotFound,
)
from nbjobs.models.accounts import Principal
from nbjobs.service.content.items import ItemFields, ItemService
from nbjobs.service.content.snapshots import SnapshotService, parse_resource_keys
from nbjobs.store.memory.items import MemoryItemStore
from nbjobs.store.memory.snapshots import MemorySnapshotStore
from tests.conftest import notebook_bytes

ALICE, BOB, ADMIN = Principal("alice"), Principal("bob"), Principal("admin", is_admin=True)
V1, V2, V3 = (notebook_bytes(n) for n in ("trivial.ipynb", "raises.ipynb", "parameters.ipynb"))


class World:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.item_store = MemoryItemStore()
        self.items = ItemService(self.item_store, self.clock, max_bytes=10_000)
        self.max = 5
        self.snapshots = SnapshotService(
            MemorySnapshotStore(self.item_store),
            self.items,
            self.item_store,
            self.clock,
            limit=lambda: self.max,
        )

    def add(self, owner: str = "alice", data: bytes = V1) -> str:
        fields = ItemFields(title="t", filename="analysis.ipynb")
        return self.items.add(Principal(owner), owner, data, type="Notebook", fields=fields).item_id

    def content(self, item_id: str) -> bytes:
        return self.item_store.get_data(item_id) or b""

    def names(self, item_id: str) -> list[str]:
        return [s.name for s in self.snapshots.list(ALICE, item_id)]


@pytest.fixture
def w() -> World:
    return World()


def test_create_keeps_the_current_notebook_and_lists_newest_first(w):
    item = w.add()
    first = w.snapshots.create(ALICE, item, name="first", description="why")
    w.clock.advance(5)
    second = w.snapshots.create(ALICE, item, name="second")
    assert w.names(item) == ["second", "first"]
    assert first.resource_key.startswith("snapshot-") and first.resource_key.endswith(".json")
    assert (first.size, first.description, first.automatic, first.source) == (len(V1), "why", False, "api")
    assert w.snapshots.get(ALICE, item, second.resource_key)[1] == V1
    assert w.content(item) == V1  # a snapshot changes nothing of the item


def test_create_from_notebook_json_stores_that_instead(w):
    item = w.add()
    snap = w.snapshots.create(ALICE, item, name="other", notebook=V2)
    assert w.snapshots.get(ALICE, item, snap.resource_key)[1] == V2 and w.content(item) == V1


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"name": ""}, InvalidRequest, "'name' is required"),
        ({"name": "x" * 256}, InvalidRequest, "at most 255"),
        ({"name": "x", "description": "d" * 4001}, InvalidRequest, "at most 4000"),
        ({"name": "x", "notebook": b'{"cells": 3}'}, InvalidNotebook, "not a notebook"),
        ({"name": "x", "notebook": b"[1, 2]"}, InvalidNotebook, "expected a JSON object"),
        ({"name": "x", "notebook": b"{" + b" " * 10_000 + b"}"}, PayloadTooLarge, "10000 bytes"),
    ],
)
def test_bad_create_inputs_are_refused_and_nothing_is_written(w, kwargs, error, text):
    item = w.add()
    with pytest.raises(error, match=text):
        w.snapshots.create(ALICE, item, **kwargs)
    assert w.snapshots.list(ALICE, item) == []


def test_manual_create_at_the_limit_is_refused_naming_it(w):
    w.max = 2
    item = w.add()
    w.snapshots.create(ALICE, item, name="one")
    w.snapshots.create(ALICE, item, name="two")
    with pytest.raises(SnapshotLimitReached, match=r"maximum of 2 snapshots \(maxSnapshotsPerNotebookItem\)"):
        w.snapshots.create(ALICE, item, name="three")
    assert w.names(item) == ["two", "one"]


def test_automatic_snapshots_give_way_to_a_manual_one(w):
    w.max = 2
    item = w.add()
    w.snapshots.save_version(ALICE, item, V2, source="JupyterLab")
    w.snapshots.save_version(ALICE, item, V3, source="JupyterLab")
    w.snapshots.create(ALICE, item, name="mine")
    kept = w.snapshots.list(ALICE, item)
    assert [(s.name, s.automatic) for s in kept] == [("mine", False), ("Before save from JupyterLab", True)]
    assert w.snapshots.get(ALICE, item, kept[1].resource_key)[1] == V2  # the older automatic one went


def test_save_version_keeps_the_old_content_then_writes_the_new(w):
    item = w.add()
    w.clock.advance(1000)
    updated = w.snapshots.save_version(ALICE, item, V2, source="JupyterLab")
    assert w.content(item) == V2 and updated.size == len(V2) and updated.modified == w.clock()
    assert w.item_store.get(item) == updated
    [snap] = w.snapshots.list(ALICE, item)
    assert (snap.name, snap.automatic, snap.source) == ("Before save from JupyterLab", True, "JupyterLab")
    assert w.snapshots.get(ALICE, item, snap.resource_key)[1] == V1


def test_save_version_drops_the_oldest_automatic_ones_never_manual_ones_and_never_refuses(w):
    w.max = 3
    item = w.add()
    w.snapshots.create(ALICE, item, name="manual")
    versions = [
        notebook_bytes(n) for n in ("raises.ipynb", "parameters.ipynb", "sleeps.ipynb", "outputs.ipynb")
    ]
    for data in versions:
        w.clock.advance(1)
        w.snapshots.save_version(ALICE, item, data, source="JupyterLab")
    kept = w.snapshots.list(ALICE, item)
    assert [s.automatic for s in kept] == [True, True, False]
    # the two newest automatic ones hold what the last two saves replaced
    assert [w.snapshots.get(ALICE, item, s.resource_key)[1] for s in kept[:2]] == versions[1:3][::-1]
    assert w.content(item) == versions[-1]


def test_a_save_past_a_limit_filled_by_manual_ones_still_keeps_what_it_replaced(w):
    w.max = 1
    item = w.add()
    w.snapshots.create(ALICE, item, name="manual")
    w.snapshots.save_version(ALICE, item, V2, source="JupyterLab")
    w.snapshots.save_version(ALICE, item, V3, source="JupyterLab")
    kept = w.snapshots.list(ALICE, item)
    assert [s.automatic for s in kept] == [True, False]  # one beyond the limit: the last replaced content
    assert w.snapshots.get(ALICE, item, kept[0].resource_key)[1] == V2 and w.content(item) == V3


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b'{"cells": 3}', InvalidNotebook),
        (b"not json", InvalidNotebook),
        (b"{" + b" " * 10_000 + b"}", PayloadTooLarge),
    ],
)
def test_save_version_refuses_a_bad_notebook_and_changes_nothing(w, data, error):
    item = w.add()
    before = w.item_store.get(item)
    with pytest.raises(error):
        w.snapshots.save_version(ALICE, item, data, source="JupyterLab")
    assert w.content(item) == V1 and w.item_store.get(item) == before and w.snapshots.list(ALICE, item) == []


def test_save_version_of_a_gone_or_foreign_item_is_item_not_found(w):
    item = w.add()
    with pytest.raises(ItemNotFound):
        w.snapshots.save_version(BOB, item, V2, source="JupyterLab")
    w.items.delete(ALICE, item)
    with pytest.raises(ItemNotFound):
        w.snapshots.save_version(ALICE, item, V2, source="JupyterLab")
    with pytest.raises(ItemNotFound):
        w.snapshots.save_version(ALICE, "", V2, source="JupyterLab")


def test_restore_preserves_the_current_content_as_an_automatic_snapshot(w):
    item = w.add()
    snap = w.snapshots.create(ALICE, item, name="v1")
    w.snapshots.save_version(ALICE, item, V2, source="JupyterLab")
    w.clock.advance(10)
    restored = w.snapshots.restore(ALICE, item, snap.resource_key)
    assert w.content(item) == V1 and restored.modified == w.clock()
    newest = w.snapshots.list(ALICE, item)[0]
    assert (newest.name, newest.automatic, newest.source) == ("Before restoring “v1”", True, "restore")
    assert w.snapshots.get(ALICE, item, newest.resource_key)[1] == V2
    w.snapshots.restore(ALICE, item, snap.resource_key, preserve=False, title="ignored")
    assert len(w.snapshots.list(ALICE, item)) == 3  # nothing more kept


def test_restore_at_the_limit_is_not_refused(w):
    w.max = 1
    item = w.add()
    snap = w.snapshots.create(ALICE, item, name="v1")
    w.snapshots.save_version(ALICE, item, V2, source="JupyterLab")
    w.snapshots.restore(ALICE, item, snap.resource_key, title="mine", description="d")
    assert w.content(item) == V1
    assert [(s.name, s.description) for s in w.snapshots.list(ALICE, item)] == [("mine", "d"), ("v1", "")]


def test_delete_is_all_or_nothing(w):
    item = w.add()
    a = w.snapshots.create(ALICE, item, name="a").resource_key
    b = w.snapshots.create(ALICE, item, name="b").resource_key
    with pytest.raises(SnapshotNotFound, match="snapshot-nope.json"):
        w.snapshots.delete(ALICE, item, [a, "snapshot-nope.json"])
    assert len(w.snapshots.list(ALICE, item)) == 2
    assert w.snapshots.delete(ALICE, item, [a, b]) == 2 and w.snapshots.list(ALICE, item) == []
    with pytest.raises(InvalidRequest):
        w.snapshots.delete(ALICE, item, [])


def test_convert_makes_a_new_item_of_the_caller(w):
    item = w.add()
    snap = w.snapshots.create(ALICE, item, name="v1")
    w.snapshots.save_version(ALICE, item, V2, source="JupyterLab")
    new = w.snapshots.convert(ADMIN, item, snap.resource_key, "Copy of v1")
    assert (new.owner, new.title, new.filename, new.type) == (
        "admin",
        "Copy of v1",
        "analysis.ipynb",
        "Notebook",
    )
    assert w.content(new.item_id) == V1 and new.item_id != item
    with pytest.raises(InvalidRequest, match="'notebookTitle' is required"):
        w.snapshots.convert(ALICE, item, snap.resource_key, " ")


def test_another_users_item_answers_like_an_unknown_one_before_any_key_is_looked_at(w):
    item = w.add()
    key = w.snapshots.create(ALICE, item, name="v1").resource_key
    calls = [
        lambda i, k: w.snapshots.list(BOB, i),
        lambda i, k: w.snapshots.create(BOB, i, name="x"),
        lambda i, k: w.snapshots.get(BOB, i, k),
        lambda i, k: w.snapshots.restore(BOB, i, k),
        lambda i, k: w.snapshots.delete(BOB, i, [k]),
        lambda i, k: w.snapshots.convert(BOB, i, k, "mine"),
        lambda i, k: w.snapshots.save_version(BOB, i, V2, source="JupyterLab"),
    ]
    for call in calls:
        for item_id, resource_key in ((item, key), ("f" * 32, "snapshot-x.json")):
            with pytest.raises(ItemNotFound) as caught:
                call(item_id, resource_key)
            assert caught.value.details == [f"itemId: {item_id}"]
    assert w.content(item) == V1 and len(w.snapshots.list(ADMIN, item)) == 1  # admins see it


def test_an_unknown_key_of_a_visible_item_is_snapshot_not_found(w):
    item = w.add()
    for call in (
        lambda: w.snapshots.get(ALICE, item, "snapshot-x.json"),
        lambda: w.snapshots.restore(ALICE, item, "snapshot-x.json"),
        lambda: w.snapshots.convert(ALICE, item, "snapshot-x.json", "t"),
    ):
        with pytest.raises(SnapshotNotFound, match="'snapshot-x.json' does not exist"):
            call()
    with pytest.raises(InvalidRequest, match="'resourceKey' is required"):
        w.snapshots.get(ALICE, item, "")
    other = w.add()
    key = w.snapshots.create(ALICE, other, name="x").resource_key
    with pytest.raises(SnapshotNotFound):  # a key of another item
        w.snapshots.get(ALICE, item, key)


def test_the_runtime_named_in_the_notebook_is_recorded(w):
    nb = json.loads(V1)
    nb["metadata"]["esriNotebookRuntime"] = {"notebookRuntimeName": "ArcGIS Notebook Python 3 Standard",
                                             "notebookRuntimeVersion": "10.0"}  # fmt: skip
    item = w.add(data=json.dumps(nb).encode())
    snap = w.snapshots.create(ALICE, item, name="x")
    assert (snap.runtime_name, snap.runtime_version) == ("ArcGIS Notebook Python 3 Standard", "10.0")


@pytest.mark.parametrize(
    ("raw", "keys"),
    [("snapshot-a.json", ["snapshot-a.json"]), ('["a", "b", "a"]', ["a", "b"]), (' ["a"] ', ["a"])],
)
def test_resource_keys_are_a_json_list_or_one_bare_key(raw, keys):
    assert parse_resource_keys(raw) == keys


@pytest.mark.parametrize(
    "raw", ["", "[", "[1]", "[]", '{"a": 1}', '[""]', json.dumps(["k"] * 101), "[" * 5000]
)
def test_bad_resource_keys_are_a_clear_error(raw):
    with pytest.raises(InvalidRequest, match="resourceKeys"):
        parse_resource_keys(raw)
