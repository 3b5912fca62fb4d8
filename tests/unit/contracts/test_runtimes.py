"""One contract for the runtime stores: in-memory, SQLite, PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Engine

from nbjobs.errors import InvalidRequest
from nbjobs.models.runtimes import RuntimeSpec, StartStatus
from nbjobs.models.stores import RuntimeStore
from nbjobs.store.memory.runtimes import MemoryRuntimeStore
from nbjobs.store.runtimes import SqlRuntimeStore
from tests.unit.contracts.common import assert_implements


@pytest.fixture
def store(engine: Engine | None) -> RuntimeStore:
    return MemoryRuntimeStore() if engine is None else SqlRuntimeStore(engine)


def spec(runtime_id: str, name: str, **fields) -> RuntimeSpec:
    return RuntimeSpec(runtime_id, name, "11.0", "k-" + runtime_id, created=int(runtime_id, 16), **fields)


def test_implementations_match_the_protocol():
    assert_implements(RuntimeStore, SqlRuntimeStore, MemoryRuntimeStore)


def test_store_contract(store):
    store.add(spec("2", "Two", max_memory=1.5, requires_advanced_privileges=True))
    store.add(spec("1", "One", is_default=True))
    store.add(spec("3", "Three", python="/p", disabled=True))
    assert [r.runtime_id for r in store.list()] == ["1", "2", "3"]  # the default first, then by age
    assert store.get("2") == spec("2", "Two", max_memory=1.5, requires_advanced_privileges=True)
    assert store.get("3").disabled is True and store.get("nope") is None
    assert store.get_by_name("tWo").runtime_id == "2" and store.get_by_name("four") is None
    with pytest.raises(InvalidRequest, match="already exists"):
        store.add(spec("4", "TWO"))
    store.save(spec("2", "Deux", max_cpu=2))
    assert store.get("2").name == "Deux" and store.get("2").max_cpu == 2
    with pytest.raises(InvalidRequest, match="already exists"):
        store.save(spec("2", "one"))
    assert store.delete("2") is True and store.delete("2") is False
    assert [r.runtime_id for r in store.list()] == ["1", "3"]


def test_add_then_get_round_trips_every_field(store):
    full = RuntimeSpec(
        runtime_id="c" * 32,
        name="Geo 2.4",
        version="11.0.1",
        kernel_name="nbjobs-geo",
        python="/opt/envs/geo/bin/python",
        max_cpu=2.5,
        max_memory=1.25,
        max_memory_unit="m",
        max_swap_memory=0.5,
        max_swap_memory_unit="k",
        max_wall_minutes=90.5,
        max_output_bytes=5_000_000_000,
        requires_advanced_privileges=True,
        disabled=True,
        is_default=True,
        created=1_716_000_000_001,
        updated=1_716_000_000_002,
        preload=("pandas", "os.path"),
        start_method="spawn",
        start_status=StartStatus("fallback", "numpy starts a thread", 1_716_000_000_003),
    )
    store.add(full)
    assert store.get("c" * 32) == full and store.get_by_name("GEO 2.4") == full
    assert store.list() == [full]


def test_an_id_is_taken_once_whatever_the_name(store):
    store.add(spec("a", "First"))
    with pytest.raises(InvalidRequest, match="already exists"):
        store.add(spec("a", "Second"))
    assert store.get("a").name == "First" and store.get_by_name("Second") is None
    assert len(store.list()) == 1


def test_list_is_the_default_first_then_by_age_then_by_name(store):
    for runtime_id, name, created in (("5", "zeta", 7), ("6", "Alpha", 7), ("7", "beta", 7), ("8", "Old", 1)):
        store.add(dataclasses.replace(spec(runtime_id, name), created=created))
    store.add(spec("9", "Default", is_default=True))  # created 9: the newest
    assert [r.name for r in store.list()] == ["Default", "Old", "Alpha", "beta", "zeta"]


def test_save_may_keep_its_own_name_in_another_case_and_never_adds(store):
    store.add(spec("a", "Geo"))
    renamed = dataclasses.replace(spec("a", "GEO"), disabled=True, updated=5, created=3)
    store.save(renamed)
    assert store.get("a") == renamed and store.get_by_name("geo") == renamed
    store.save(spec("b", "Other"))
    assert store.get("b") is None and store.get_by_name("Other") is None
    with pytest.raises(InvalidRequest, match="already exists"):  # even for an unknown id
        store.save(spec("b", "geo"))
    assert store.list() == [renamed]


def test_a_deleted_runtime_frees_its_name(store):
    store.add(spec("a", "Geo"))
    assert store.delete("a") is True
    assert store.get("a") is None and store.get_by_name("Geo") is None and store.list() == []
    assert store.delete("unknown") is False
    store.add(spec("b", "geo"))
    assert store.get_by_name("GEO").runtime_id == "b"


def test_a_new_runtime_starts_by_fork_with_no_preload_and_no_status(store):
    store.add(spec("a", "Geo"))
    got = store.get("a")
    assert (got.preload, got.start_method, got.start_status) == ((), "fork", None)


def test_record_start_status_writes_only_the_status_and_save_keeps_it(store):
    store.add(spec("a", "Geo", preload=("pandas",), max_cpu=2))
    ready = StartStatus("fork", "", 1_716_000_000_500)
    store.record_start_status("a", ready)
    assert store.get("a") == spec("a", "Geo", preload=("pandas",), max_cpu=2, start_status=ready)
    store.save(spec("a", "Geo", preload=("numpy", "pandas"), start_method="spawn"))  # no status given
    got = store.get("a")
    assert (got.preload, got.start_method, got.max_cpu, got.start_status) == (
        ("numpy", "pandas"),
        "spawn",
        0,
        ready,
    )
    refused = StartStatus("fallback", "'nope' cannot be imported: No module named 'nope'", 7)
    store.record_start_status("a", refused)
    assert store.get("a").start_status == refused and store.get_by_name("geo").start_status == refused
    store.record_start_status("a", None)
    assert store.get("a").start_status is None and store.list()[0].start_status is None


def test_record_start_status_of_a_runtime_gone_is_a_no_op(store):
    store.record_start_status("gone", StartStatus("fork", "", 1))
    assert store.get("gone") is None and store.list() == []
    store.add(spec("a", "Geo"))
    store.delete("a")
    store.record_start_status("a", StartStatus("spawn", "", 2))
    assert store.get("a") is None and store.list() == []
