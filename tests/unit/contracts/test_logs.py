"""One contract for the log stores (the ArcGIS logs resource): in-memory, SQLite, PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from nbjobs.models.logs import LogMessage, LogQuery
from nbjobs.models.stores import LogStore
from nbjobs.store.logs import SqlLogStore
from nbjobs.store.memory.logs import MemoryLogStore
from tests.unit.contracts.common import assert_implements


@pytest.fixture
def store(engine: Engine | None) -> LogStore:
    return MemoryLogStore() if engine is None else SqlLogStore(engine)


def msg(time: int, level: int = 30, source: str = "nbjobs.x", message: str = "m", **fields) -> LogMessage:
    return LogMessage(time=time, level=level, source=source, message=message, **fields)


def test_implementations_match_the_protocol():
    assert_implements(LogStore, SqlLogStore, MemoryLogStore)


def test_add_then_query_round_trips_every_field(store):
    full = LogMessage(
        time=1_700_000_000_123,
        level=40,
        source="nbjobs.execution.supervisor",
        message="job j1 FAILED (cell_error): boom\nTraceback …",
        machine="host-a",
        process=4242,
        thread="nbjobs-worker-0",
        method_name="log_end",
        job_id="j" + "a" * 32,
        username="alice",
        runtime="rt-1",
        request_id="req-1",
    )
    store.add([full])
    assert store.query(LogQuery()) == [full]


def test_query_is_newest_first_and_ties_go_to_the_later_kept(store):
    store.add([msg(10, message="a"), msg(30, message="b"), msg(20, message="c")])
    store.add([msg(30, message="d")])
    assert [m.message for m in store.query(LogQuery())] == ["d", "b", "c", "a"]


def test_query_bounds_are_inclusive_and_limit_cuts_the_oldest(store):
    store.add([msg(t, message=str(t)) for t in (10, 20, 30, 40, 50)])
    assert [m.time for m in store.query(LogQuery(newest=40, oldest=20))] == [40, 30, 20]
    assert [m.time for m in store.query(LogQuery(limit=2))] == [50, 40]


def test_query_filters_level_source_prefix_job_machine_and_process(store):
    store.add(
        [
            msg(1, level=20, source="nbjobs.web"),
            msg(2, level=30, source="nbjobs.execution.supervisor", job_id="j1", machine="a", process=7),
            msg(3, level=40, source="nbjobs.executionist", job_id="j2", machine="b", process=8),
            msg(4, level=30, source="nbjobs.execution", machine="a", process=8),
        ]
    )

    def times(**q) -> list[int]:
        return [m.time for m in store.query(LogQuery(**q))]

    assert times(min_level=30) == [4, 3, 2]
    assert times(sources=("nbjobs.execution",)) == [4, 2]  # the logger and its children, not a prefix
    assert times(sources=("nbjobs.web", "nbjobs.executionist")) == [3, 1]
    assert times(job_id="j1") == [2]
    assert times(machines=("b",)) == [3]
    assert times(processes=(8,)) == [4, 3]


def test_a_source_with_like_wildcards_matches_only_itself(store):
    store.add([msg(1, source="a_b"), msg(2, source="axb.c"), msg(3, source="a_b.c")])
    assert [m.time for m in store.query(LogQuery(sources=("a_b",)))] == [3, 1]


def test_long_fields_are_cut_to_their_columns(store):
    store.add([msg(1, source="s" * 300, job_id="j" * 60, request_id="r" * 200)])
    (got,) = store.query(LogQuery())
    assert (len(got.source), len(got.job_id), len(got.request_id)) == (255, 40, 128)


def test_delete_before_forgets_older_only_and_clear_forgets_all(store):
    store.add([msg(t) for t in (10, 20, 30)])
    assert store.delete_before(20) == 1
    assert [m.time for m in store.query(LogQuery())] == [30, 20]
    assert store.clear() == 2
    assert store.query(LogQuery()) == []
    assert store.clear() == 0


def test_settings_start_empty_and_save_merges_by_name(store):
    assert store.load_settings() == {}
    store.save_settings({"logLevel": "INFO", "maxLogFileAge": 90}, 1)
    store.save_settings({"maxLogFileAge": 7}, 2)
    assert store.load_settings() == {"logLevel": "INFO", "maxLogFileAge": 7}


def test_add_of_nothing_is_a_no_op(store):
    store.add([])
    assert store.query(LogQuery()) == []
