"""Item stores (in-memory fake and SQL: SQLite, PostgreSQL) agree on items, write-backs and multipart
uploads."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Engine

from nbjobs.models.items import Item, Upload
from nbjobs.models.portal_stores import ItemStore
from nbjobs.store.items import SqlItemStore
from nbjobs.store.memory.items import MemoryItemStore
from tests.unit.contracts.common import DUPLICATE, assert_implements


@pytest.fixture
def items(engine: Engine | None) -> ItemStore:
    return MemoryItemStore() if engine is None else SqlItemStore(engine)


def item(item_id: str, owner: str = "alice", created: int = 100, *, title: str = "", **fields) -> Item:
    return Item(item_id, owner, title or f"title {item_id[:4]}", "Notebook", created, created, **fields)


def test_parts_assemble_in_order_and_commit_once(items):
    items.add_upload(Upload("a" * 32, "alice", 100, {"title": "t"}))
    assert items.get_upload("a" * 32).owner == "alice"
    assert items.put_part("a" * 32, 2, b"world")
    assert items.put_part("a" * 32, 1, b"hello ")
    assert items.put_part("a" * 32, 1, b"Hello ")  # a part sent again replaces the first
    assert items.part_sizes("a" * 32) == {1: 6, 2: 5}
    assert items.upload_data("a" * 32) == b"Hello world"
    item = Item("a" * 32, "alice", "t", "Notebook", 100, 100)
    assert items.finish_upload(item, b"Hello world")
    assert not items.finish_upload(item, b"again")  # committed already
    assert items.get_upload("a" * 32) is None and items.get_data("a" * 32) == b"Hello world"
    assert not items.put_part("a" * 32, 3, b"late")


def test_old_uploads_are_dropped_and_unknown_ones_take_no_parts(items):
    items.add_upload(Upload("b" * 32, "bob", 100))
    items.add_upload(Upload("c" * 32, "bob", 500))
    assert items.drop_uploads_before(200) == 1
    assert items.get_upload("b" * 32) is None and items.get_upload("c" * 32) is not None
    assert not items.put_part("d" * 32, 1, b"x")
    items.drop_upload("c" * 32)
    assert items.get_upload("c" * 32) is None


def test_implementations_match_the_protocol():
    assert_implements(ItemStore, SqlItemStore, MemoryItemStore)


def test_add_then_get_round_trips_every_field_and_the_data(items):
    full = Item(
        "a" * 32,
        "alice",
        "Analysis",
        "Notebook",
        created=1_716_000_000_001,
        modified=1_716_000_000_002,
        size=11,
        filename="analysis.ipynb",
        description="<p>long</p>",
        snippet="short",
        tags=("b", "a"),
        type_keywords=("Notebook", "Python"),
    )
    items.add(full, b"\x00binary\xff")
    items.add(item("b" * 32), b"")
    assert items.get("a" * 32) == full
    assert items.get_data("a" * 32) == b"\x00binary\xff"
    assert items.get("b" * 32) == item("b" * 32) and items.get_data("b" * 32) == b""
    assert items.get("c" * 32) is None and items.get_data("c" * 32) is None


def test_an_item_id_is_taken_once(items):
    items.add(item("a" * 32, title="first"), b"first")
    with pytest.raises(DUPLICATE):
        items.add(item("a" * 32, title="second"), b"second")
    assert items.get("a" * 32).title == "first" and items.get_data("a" * 32) == b"first"


def test_save_replaces_the_metadata_and_the_data_only_when_given(items):
    items.add(item("a" * 32, tags=("x",)), b"old")
    edited = dataclasses.replace(item("a" * 32), title="new", modified=500, tags=(), snippet="s", size=3)
    items.save(edited)
    assert items.get("a" * 32) == edited and items.get_data("a" * 32) == b"old"
    items.save(edited, b"new")
    assert items.get_data("a" * 32) == b"new"
    items.save(item("b" * 32), b"ghost")  # not an item: nothing is stored
    assert items.get("b" * 32) is None and items.get_data("b" * 32) is None and len(items.list()) == 1


def test_delete_removes_the_item_its_data_and_its_pending_write_backs(items):
    items.add(item("a" * 32), b"a")
    items.add(item("b" * 32), b"b")
    items.add_pending_update("j1", "a" * 32, 1)
    items.add_pending_update("j2", "b" * 32, 2)
    assert items.delete("a" * 32) is True
    assert items.get("a" * 32) is None and items.get_data("a" * 32) is None
    assert items.pending_updates() == [("j2", "b" * 32)]
    assert items.delete("a" * 32) is False
    assert [i.item_id for i in items.list()] == ["b" * 32]


def test_list_is_newest_first_ties_by_id_and_filters_by_owner(items):
    for key, owner, created in (
        ("c", "alice", 300),
        ("a", "bob", 100),
        ("d", "alice", 200),
        ("b", "alice", 300),
    ):
        items.add(item(key * 32, owner, created), b"")
    assert [i.item_id[0] for i in items.list()] == ["b", "c", "d", "a"]
    assert [i.item_id[0] for i in items.list("alice")] == ["b", "c", "d"]
    assert items.list("carol") == []
    assert items.list("bob") == [item("a" * 32, "bob", 100)]


def test_pending_write_backs_are_kept_in_order_until_dropped(items):
    assert items.pending_updates() == []
    items.add_pending_update("j2", "b" * 32, 20)
    items.add_pending_update("j1", "a" * 32, 10)
    items.add_pending_update("j3", "a" * 32, 30)  # several jobs may write back to one item
    assert items.pending_updates() == [("j1", "a" * 32), ("j2", "b" * 32), ("j3", "a" * 32)]
    items.drop_pending_update("j1")
    items.drop_pending_update("unknown")
    assert items.pending_updates() == [("j2", "b" * 32), ("j3", "a" * 32)]
    with pytest.raises(DUPLICATE):  # one write-back per job
        items.add_pending_update("j2", "c" * 32, 40)
    assert items.pending_updates() == [("j2", "b" * 32), ("j3", "a" * 32)]


def test_an_upload_round_trips_and_is_not_an_item(items):
    props = {"title": "t", "tags": ["a", "b"], "typeKeywords": [], "nested": {"x": 1, "y": None}}
    items.add_upload(Upload("a" * 32, "alice", 123, props))
    items.add_upload(Upload("b" * 32, "bob", 124))
    assert items.get_upload("a" * 32) == Upload("a" * 32, "alice", 123, props)
    assert items.get_upload("b" * 32) == Upload("b" * 32, "bob", 124, {})
    assert items.get_upload("c" * 32) is None
    assert items.get("a" * 32) is None and items.list() == []
    assert items.part_sizes("a" * 32) == {} and items.upload_data("a" * 32) == b""
    with pytest.raises(DUPLICATE):
        items.add_upload(Upload("a" * 32, "carol", 999))
    assert items.get_upload("a" * 32).owner == "alice"


def test_uploads_and_parts_do_not_mix(items):
    items.add_upload(Upload("a" * 32, "alice", 1))
    items.add_upload(Upload("b" * 32, "alice", 1))
    assert items.put_part("a" * 32, 1, b"aaa")
    assert items.put_part("b" * 32, 1, b"b")
    assert items.put_part("b" * 32, 3, b"bbb")  # parts need not be contiguous
    assert items.part_sizes("a" * 32) == {1: 3} and items.part_sizes("b" * 32) == {1: 1, 3: 3}
    assert items.upload_data("b" * 32) == b"bbbb"
    assert items.part_sizes("c" * 32) == {} and items.upload_data("c" * 32) == b""


def test_finish_upload_turns_the_upload_into_an_item_with_every_field(items):
    items.add_upload(Upload("a" * 32, "alice", 100, {"title": "t"}))
    items.put_part("a" * 32, 1, b"data")
    full = item("a" * 32, size=4, filename="n.ipynb", tags=("t",), type_keywords=("Notebook",))
    assert items.finish_upload(full, b"data")
    assert items.get("a" * 32) == full and items.get_data("a" * 32) == b"data"
    assert items.list() == [full]
    assert items.part_sizes("a" * 32) == {} and items.upload_data("a" * 32) == b""
    assert not items.finish_upload(item("b" * 32), b"x")  # never started: no item appears
    assert items.get("b" * 32) is None and items.get_data("b" * 32) is None


def test_drop_upload_removes_its_parts_and_unknown_ones_are_ignored(items):
    items.add_upload(Upload("a" * 32, "alice", 1))
    items.put_part("a" * 32, 1, b"x")
    items.drop_upload("a" * 32)
    items.drop_upload("z" * 32)
    assert items.get_upload("a" * 32) is None
    assert items.part_sizes("a" * 32) == {} and items.upload_data("a" * 32) == b""
    assert not items.put_part("a" * 32, 2, b"y")
    assert items.part_sizes("a" * 32) == {}


def test_drop_uploads_before_is_strict_and_takes_the_parts(items):
    for item_id, created in (("a", 100), ("b", 199), ("c", 200), ("d", 300)):
        items.add_upload(Upload(item_id * 32, "alice", created))
        items.put_part(item_id * 32, 1, item_id.encode())
    assert items.drop_uploads_before(200) == 2
    assert [x for x in "abcd" if items.get_upload(x * 32)] == ["c", "d"]
    assert items.part_sizes("a" * 32) == {} and items.upload_data("b" * 32) == b""
    assert items.upload_data("c" * 32) == b"c"
    assert items.drop_uploads_before(200) == 0


def test_records_read_back_share_nothing_with_the_caller(items):
    props = {"tags": ["a"]}
    items.add_upload(Upload("a" * 32, "alice", 1, props))
    props["tags"].append("changed by the caller")
    items.get_upload("a" * 32).properties["tags"].append("changed by a reader")
    assert items.get_upload("a" * 32).properties == {"tags": ["a"]}
