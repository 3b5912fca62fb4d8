"""One contract for every web tool store: the SQL store (SQLite, PostgreSQL) and the in-memory fake."""

from __future__ import annotations

import dataclasses

import pytest

from nbjobs.models.webtools import ORG, WebTool, WebToolCall
from nbjobs.settings import load_settings
from nbjobs.store.engine import make_engine
from nbjobs.store.memory.webtools import MemoryWebToolStore
from nbjobs.store.migrate import upgrade
from nbjobs.store.webtools import SqlWebToolStore


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
