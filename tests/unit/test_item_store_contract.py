"""Item stores (in-memory fake and SQL) agree on multipart uploads."""

from __future__ import annotations

import pytest

from nbjobs.models.items import Item, Upload
from nbjobs.settings import load_settings
from nbjobs.store.engine import open_store
from nbjobs.store.items import SqlItemStore
from nbjobs.store.memory.items import MemoryItemStore


@pytest.fixture(params=["memory", "sqlite"])
def items(request, tmp_path):
    if request.param == "memory":
        yield MemoryItemStore()
    else:
        jobs = open_store(load_settings({}, data_dir=tmp_path))
        yield SqlItemStore(jobs.engine)
        jobs.close()


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
