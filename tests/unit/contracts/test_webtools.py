"""One contract for every web tool store: the SQL store (SQLite, PostgreSQL) and the in-memory fake."""

from __future__ import annotations

import dataclasses

import pytest

from nbjobs.models.portal_stores import WebToolStore
from nbjobs.models.webtools import ORG, PRIVATE, WebTool, WebToolCall
from nbjobs.settings import load_settings
from nbjobs.store.engine import make_engine
from nbjobs.store.memory.webtools import MemoryWebToolStore
from nbjobs.store.migrate import upgrade
from nbjobs.store.webtools import SqlWebToolStore
from tests.unit.contracts.common import DUPLICATE, assert_implements


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryWebToolStore()
        return
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    engine = make_engine(load_settings({}, data_dir=tmp_path, database_url=url))
    upgrade(engine)
    yield SqlWebToolStore(engine)
    engine.dispose()


def _tool(name: str, notebook: str, owner: str = "alice", created: int = 1) -> WebTool:
    params = {"inputs": [{"name": "x", "type": "Long", "defaultValue": 1}], "outputs": []}
    return WebTool(
        name,
        owner,
        notebook,
        f"T {name}",
        "T",
        created,
        created,
        params=params,
        runtime_id="r",
        snapshot_id="s1",
    )


def test_add_get_and_one_tool_per_notebook(store):
    assert store.add(_tool("a" * 32, "n1"), b"nb1") is True
    assert store.get("a" * 32) == _tool("a" * 32, "n1")
    assert store.by_notebook("n1").service_name == "a" * 32
    assert store.snapshot("a" * 32) == b"nb1"
    assert store.add(_tool("b" * 32, "n1"), b"nb") is False
    assert store.add(_tool("a" * 32, "n2"), b"nb") is False
    assert store.get("b" * 32) is None and store.snapshot("b" * 32) is None


def test_list_is_oldest_first_paged_and_filtered_by_owner(store):
    for i, owner in enumerate(["alice", "bob", "alice"]):
        store.add(_tool(f"{i}" * 32, f"n{i}", owner, created=10 + i), b"x")
    assert [t.service_name for t in store.list()] == ["0" * 32, "1" * 32, "2" * 32]
    assert [t.service_name for t in store.list("alice", limit=1, offset=1)] == ["2" * 32]
    assert (store.count(), store.count("alice"), store.count("carol")) == (3, 2, 0)


def test_save_replaces_the_tool_and_the_snapshot_only_when_given(store):
    store.add(_tool("a" * 32, "n1"), b"old")
    edited = dataclasses.replace(_tool("a" * 32, "n1"), access=ORG, snapshot_id="s2", modified=5)
    store.save(edited)
    assert store.get("a" * 32) == edited and store.snapshot("a" * 32) == b"old"
    store.save(edited, b"new")
    assert store.snapshot("a" * 32) == b"new"


def test_calls_are_recorded_deleted_with_their_tool_and_purged_by_age(store):
    store.add(_tool("a" * 32, "n1"), b"x")
    store.add(_tool("b" * 32, "n2"), b"x")
    store.add_call(WebToolCall("j1", "a" * 32, "T", {"x": 2}, 100))
    store.add_call(WebToolCall("j2", "b" * 32, "T", {}, 100))
    store.add_call(WebToolCall("j3", "b" * 32, "T", {}, 300))
    assert store.get_call("j1") == WebToolCall("j1", "a" * 32, "T", {"x": 2}, 100)
    assert store.delete("a" * 32) is True and store.delete("a" * 32) is False
    assert store.get_call("j1") is None and store.get("a" * 32) is None
    assert store.delete_calls(200) == 1
    assert store.get_call("j2") is None and store.get_call("j3") is not None


def test_implementations_match_the_protocol():
    assert_implements(WebToolStore, SqlWebToolStore, MemoryWebToolStore)


def test_every_field_round_trips_and_unknown_names_answer_none(store):
    full = WebTool(
        "a" * 32,
        "alice",
        "n" * 32,
        "Buffer",
        "BufferTask",
        created=1_716_000_000_001,
        modified=1_716_000_000_002,
        description="<b>buffers</b>",
        access=ORG,
        params={"inputs": [{"name": "d", "type": "Double", "defaultValue": 1.5, "choices": [1, None]}]},
        runtime_id="r" * 32,
        snapshot_id="snap-7",
    )
    assert store.add(full, b"\x00snapshot\xff")
    assert store.add(WebTool("b" * 32, "bob", "m" * 32, "T", "T", 1, 1), b"")
    assert store.get("a" * 32) == full and store.by_notebook("n" * 32) == full
    assert store.snapshot("a" * 32) == b"\x00snapshot\xff" and store.snapshot("b" * 32) == b""
    plain = store.get("b" * 32)
    assert (plain.description, plain.access, plain.params, plain.runtime_id) == ("", PRIVATE, {}, "")
    assert store.get("c" * 32) is None and store.by_notebook("c" * 32) is None
    assert store.snapshot("c" * 32) is None


def test_list_ties_by_name_and_pages_past_the_end(store):
    for name, created in (("c", 5), ("a", 5), ("b", 1)):
        store.add(_tool(name * 32, "n" + name, created=created), b"")
    assert [t.service_name[0] for t in store.list()] == ["b", "a", "c"]
    assert [t.service_name[0] for t in store.list(limit=2, offset=1)] == ["a", "c"]
    assert store.list(offset=3) == [] and store.list(limit=0) == []
    assert store.list("carol") == [] and store.count("carol") == 0


def test_save_never_adds_a_tool(store):
    store.save(_tool("a" * 32, "n1"), b"x")
    assert store.get("a" * 32) is None and store.snapshot("a" * 32) is None and store.count() == 0


def test_save_refuses_a_notebook_another_tool_was_published_from(store):
    store.add(_tool("a" * 32, "n1"), b"a")
    store.add(_tool("b" * 32, "n2"), b"b")
    with pytest.raises(DUPLICATE):
        store.save(dataclasses.replace(_tool("b" * 32, "n2"), notebook_id="n1", title="moved"), b"new")
    assert store.get("b" * 32) == _tool("b" * 32, "n2") and store.snapshot("b" * 32) == b"b"
    assert store.by_notebook("n1").service_name == "a" * 32


def test_delete_frees_the_name_and_the_notebook(store):
    store.add(_tool("a" * 32, "n1"), b"old")
    assert store.delete("a" * 32)
    assert store.by_notebook("n1") is None and store.snapshot("a" * 32) is None and store.count() == 0
    assert store.add(_tool("a" * 32, "n1", created=9), b"new")
    assert store.get("a" * 32).created == 9 and store.snapshot("a" * 32) == b"new"


def test_a_call_is_recorded_once_and_purged_strictly_before_the_cut(store):
    inputs = {"x": 2, "features": {"type": "FeatureSet", "rows": [[1, 2.5], [None, "a"]]}}
    store.add_call(WebToolCall("j1", "a" * 32, "T", inputs, 100))
    store.add_call(WebToolCall("j2", "a" * 32, "T", {}, 200))
    assert store.get_call("j1") == WebToolCall("j1", "a" * 32, "T", inputs, 100)
    assert store.get_call("j9") is None
    with pytest.raises(DUPLICATE):  # one call per job
        store.add_call(WebToolCall("j1", "b" * 32, "U", {}, 300))
    assert store.get_call("j1").service_name == "a" * 32
    assert store.delete_calls(100) == 0  # created == the cut: kept
    assert store.delete_calls(201) == 2
    assert store.get_call("j1") is None and store.get_call("j2") is None


def test_records_read_back_share_nothing_with_the_caller(store):
    tool = _tool("a" * 32, "n1")
    store.add(tool, b"")
    tool.params["inputs"].append("changed by the caller")
    store.get("a" * 32).params["inputs"].append("changed by a reader")
    store.list()[0].params["outputs"].append("changed by a reader")
    store.by_notebook("n1").params["extra"] = "added by a reader"
    assert store.get("a" * 32) == _tool("a" * 32, "n1")
    inputs = {"x": [1]}
    store.add_call(WebToolCall("j1", "a" * 32, "T", inputs, 1))
    inputs["x"].append("changed by the caller")
    store.get_call("j1").inputs["x"].append("changed by a reader")
    assert store.get_call("j1").inputs == {"x": [1]}
