"""One contract for the worker registry: in-memory, SQLite, PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Engine

from nbjobs.models.stores import WorkerStore
from nbjobs.models.workers import WorkerRecord
from nbjobs.store.memory.workers import MemoryWorkerStore
from nbjobs.store.workers import SqlWorkerStore
from tests.unit.contracts.common import assert_implements


@pytest.fixture
def store(engine: Engine | None) -> WorkerStore:
    return MemoryWorkerStore() if engine is None else SqlWorkerStore(engine)


def worker(worker_id: str, hostname: str = "host", started: int = 100, beat: int = 100) -> WorkerRecord:
    return WorkerRecord(
        worker_id=worker_id,
        hostname=hostname,
        pid=4242,
        runtimes=({"id": "r" * 32, "name": "Python 3 Standard"},),
        queues=("rt." + "r" * 32,),
        concurrency=2,
        state="online",
        version="0.1.0",
        started=started,
        last_heartbeat=beat,
    )


def test_both_implement_the_protocol():
    assert_implements(WorkerStore, MemoryWorkerStore, SqlWorkerStore)


def test_register_then_live_round_trips_every_field(store: WorkerStore):
    record = worker("host/1-a")
    store.register(record)
    assert store.live(0) == [record]


def test_register_again_replaces_the_row(store: WorkerStore):
    store.register(worker("host/1-a"))
    again = dataclasses.replace(worker("host/1-a"), concurrency=8, state="draining")
    store.register(again)
    assert store.live(0) == [again]


def test_beat_renews_and_may_change_the_state(store: WorkerStore):
    store.register(worker("host/1-a", beat=100))
    assert store.beat("host/1-a", 500) is True
    [renewed] = store.live(0)
    assert renewed.last_heartbeat == 500 and renewed.state == "online"
    assert store.beat("host/1-a", 600, "draining") is True
    assert store.live(0)[0].state == "draining"
    assert store.beat("host/unknown", 600) is False


def test_live_is_since_a_time_by_host_then_start(store: WorkerStore):
    store.register(worker("b/1", hostname="b", started=1, beat=1000))
    store.register(worker("a/2", hostname="a", started=2, beat=1000))
    store.register(worker("a/1", hostname="a", started=1, beat=1000))
    store.register(worker("a/0", hostname="a", started=0, beat=999))
    assert [w.worker_id for w in store.live(1000)] == ["a/1", "a/2", "b/1"]
    assert [w.worker_id for w in store.live(999)] == ["a/0", "a/1", "a/2", "b/1"]


def test_prune_forgets_the_silent_and_remove_forgets_one(store: WorkerStore):
    store.register(worker("old", beat=10))
    store.register(worker("new", beat=20))
    assert store.prune(20) == 1
    assert [w.worker_id for w in store.live(0)] == ["new"]
    store.remove("new")
    store.remove("new")  # removing twice is harmless
    assert store.live(0) == []
