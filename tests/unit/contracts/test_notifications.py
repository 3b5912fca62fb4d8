"""One contract for the notification stores (rules, watches, the outbox and its attempt log): in-memory,
SQLite, PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Engine

from nbjobs.models.notifications import Attempt, Channel, Delivery, DeliveryStatus, NotifyEvent, Rule
from nbjobs.models.portal_stores import NotificationStore
from nbjobs.models.stores import JobStore
from nbjobs.store.jobs import SqlJobStore
from nbjobs.store.memory.jobs import MemoryJobStore
from nbjobs.store.memory.notifications import MemoryNotificationStore
from nbjobs.store.notifications import SqlNotificationStore
from tests.unit.contracts.common import assert_implements

JOB = "j" + "a" * 32
MAIL = Rule(
    "r1", (NotifyEvent.FAILED, NotifyEvent.TIMED_OUT), Channel.EMAIL, "ops@example.com", attach_notebook=True
)
HOOK = Rule(
    "r2",
    (NotifyEvent.RUNNING_LONGER,),
    Channel.WEBHOOK,
    "https://hooks.example.com/x",
    secret="s" * 20,
    after_minutes=5,
)


@pytest.fixture
def jobs(engine: Engine | None) -> JobStore:
    return MemoryJobStore() if engine is None else SqlJobStore(engine)


@pytest.fixture
def store(engine: Engine | None, jobs: JobStore) -> NotificationStore:
    return MemoryNotificationStore(jobs) if engine is None else SqlNotificationStore(engine)


def delivery(
    delivery_id: str,
    rule: Rule = MAIL,
    event: NotifyEvent = NotifyEvent.FAILED,
    at: int = 100,
    job_id: str = JOB,
) -> Delivery:
    return Delivery(
        delivery_id=delivery_id,
        job_id=job_id,
        username="alice",
        rule=rule,
        event=event,
        created=at,
        next_attempt_at=at,
        payload={"idempotencyKey": f"{job_id}:{rule.rule_id}:{event}", "nested": {"n": [1, None, True]}},
        updated=at,
    )


def test_implementations_match_the_protocol():
    assert_implements(NotificationStore, SqlNotificationStore, MemoryNotificationStore)


def test_scope_rules_round_trip_every_field_and_an_empty_tuple_forgets_them(store):
    store.set_rules("task:t1", (MAIL, HOOK), 5)
    assert store.rules("task:t1") == (MAIL, HOOK)
    assert store.rules("task:other") == ()
    store.set_rules("task:t1", (HOOK,), 6)
    assert store.rules("task:t1") == (HOOK,)
    store.set_rules("task:t1", (), 7)
    assert store.rules("task:t1") == ()


def test_a_watch_is_kept_once_with_its_first_rules(store):
    store.watch(JOB, "alice", (MAIL,), 10)
    store.watch(JOB, "alice", (HOOK,), 11)
    (watch,) = store.watches()
    assert (watch.job_id, watch.username, watch.rules, watch.created, watch.fired, watch.done) == (
        JOB,
        "alice",
        (MAIL,),
        10,
        frozenset(),
        False,
    )
    assert store.watch_of(JOB) == dataclasses.replace(watch, job_status=None)
    assert watch.job_status == ""  # no such job (yet)
    assert store.watch_of("j" + "b" * 32) is None


def test_fire_enqueues_each_job_rule_event_once_and_records_fired_keys(store):
    store.watch(JOB, "alice", (MAIL, HOOK), 10)
    assert store.fire(JOB, [delivery("d1")], frozenset({"r1:failed"}), False) == 1
    # the same (job, rule, event) under another id: a second scan, another replica — not enqueued again
    assert (
        store.fire(
            JOB,
            [delivery("d2"), delivery("d3", HOOK, NotifyEvent.RUNNING_LONGER)],
            frozenset({"r2:runningLonger"}),
            True,
        )
        == 1
    )
    assert [d.delivery_id for d in store.deliveries(JOB)] == ["d1", "d3"]
    assert store.watch_of(JOB).fired == frozenset({"r1:failed", "r2:runningLonger"})
    assert store.watch_of(JOB).done is True
    assert store.watches() == []


def test_delivery_round_trips_every_field(store):
    store.watch(JOB, "alice", (HOOK,), 10)
    d = delivery("d1", HOOK, NotifyEvent.RUNNING_LONGER, at=123)
    store.fire(JOB, [d], frozenset(), False)
    assert store.deliveries(JOB) == [d]
    assert store.due(123) == [d]
    assert store.due(122) == []


def test_claim_is_a_compare_and_set_so_two_senders_never_take_one_attempt(store):
    store.watch(JOB, "alice", (MAIL,), 10)
    store.fire(JOB, [delivery("d1", at=100)], frozenset(), False)
    assert store.claim("d1", 100, 5000) is True
    assert store.claim("d1", 100, 6000) is False  # the other sender saw the same due row
    assert store.due(4999) == []
    assert [d.delivery_id for d in store.due(5000)] == ["d1"]


def test_record_appends_attempts_and_updates_the_delivery(store):
    store.watch(JOB, "alice", (MAIL,), 10)
    store.fire(JOB, [delivery("d1", at=100)], frozenset(), False)
    store.record(Attempt("d1", 1, 100, 7, False, "HTTP 500"), DeliveryStatus.PENDING, 900, "HTTP 500")
    (d,) = store.deliveries(JOB)
    assert (d.attempts, d.status, d.next_attempt_at, d.last_error) == (
        1,
        DeliveryStatus.PENDING,
        900,
        "HTTP 500",
    )
    store.record(Attempt("d1", 2, 900, 3, True, "HTTP 200"), DeliveryStatus.SENT, 0, "")
    (d,) = store.deliveries(JOB)
    assert (d.attempts, d.status, d.last_error) == (2, DeliveryStatus.SENT, "")
    assert store.attempts("d1") == [
        Attempt("d1", 1, 100, 7, False, "HTTP 500"),
        Attempt("d1", 2, 900, 3, True, "HTTP 200"),
    ]
    assert store.due(10**12) == []


def test_attempt_detail_is_cut_to_what_the_column_keeps(store):
    store.watch(JOB, "alice", (MAIL,), 10)
    store.fire(JOB, [delivery("d1")], frozenset(), False)
    store.record(Attempt("d1", 1, 100, 7, False, "x" * 5000), DeliveryStatus.PENDING, 900, "y" * 5000)
    assert len(store.attempts("d1")[0].detail) == 1000
    assert len(store.deliveries(JOB)[0].last_error) == 1000


def test_recent_is_newest_first_and_filters_by_status(store):
    other = "j" + "c" * 32
    store.watch(JOB, "alice", (MAIL,), 10)
    store.watch(other, "bob", (MAIL,), 10)
    store.fire(JOB, [delivery("d1", at=100)], frozenset(), True)
    store.fire(other, [delivery("d2", at=200, job_id=other)], frozenset(), True)
    store.record(Attempt("d2", 1, 200, 1, True, "ok"), DeliveryStatus.SENT, 0, "")
    assert [d.delivery_id for d in store.recent()] == ["d2", "d1"]
    assert [d.delivery_id for d in store.recent(status=DeliveryStatus.SENT)] == ["d2"]
    assert [d.delivery_id for d in store.recent(limit=1)] == ["d2"]


def test_config_round_trips_and_replaces(store):
    assert store.get_config("smtp") is None
    store.put_config("smtp", {"host": "mail", "port": 25, "nested": [1]}, 1)
    store.put_config("smtp", {"host": "mail2", "port": 465}, 2)
    assert store.get_config("smtp") == {"host": "mail2", "port": 465}


def test_purge_drops_finished_deliveries_and_done_watches_but_keeps_pending(store):
    other = "j" + "c" * 32
    store.watch(JOB, "alice", (MAIL,), 10)
    store.watch(other, "bob", (MAIL,), 10)
    store.fire(JOB, [delivery("d1", at=100)], frozenset({"r1:failed"}), True)
    store.fire(other, [delivery("d2", at=100, job_id=other)], frozenset(), False)
    store.record(Attempt("d1", 1, 100, 1, True, "ok"), DeliveryStatus.SENT, 0, "")
    assert store.purge(50) == 0
    assert store.purge(10_000) == 1
    assert store.deliveries(JOB) == [] and store.attempts("d1") == []
    assert store.watch_of(JOB) is None
    assert [d.delivery_id for d in store.deliveries(other)] == ["d2"]
    assert store.watch_of(other) is not None


def test_watches_page_by_created_then_job_id(store):
    ids = ["j" + c * 32 for c in "abcde"]
    for i, job_id in enumerate(ids):
        store.watch(job_id, "alice", (MAIL,), 10 if i < 3 else 20)
    first = store.watches(limit=2)
    assert [w.job_id for w in first] == ids[:2]
    rest = store.watches(limit=10, after=(first[-1].created, first[-1].job_id))
    assert [w.job_id for w in rest] == ids[2:]
    assert store.watches(after=(20, ids[-1])) == []


def test_watches_carry_their_jobs_status_revision_and_start_and_fire_records_what_was_seen(store, jobs):
    from nbjobs.models.jobs import Job as JobRecord
    from nbjobs.models.jobs import JobInputs, JobStatus, JobType
    from nbjobs.models.runtimes import DEFAULT_RUNTIME

    job = JobRecord(
        JOB, JobType.EXECUTE_NOTEBOOK, "alice", JobStatus.SUBMITTED, JobInputs(), DEFAULT_RUNTIME, 5, 5
    )
    assert jobs.create(job, b"{}")
    store.watch(JOB, "alice", (MAIL,), 10)
    (watch,) = store.watches()
    assert (watch.job_status, watch.job_revision, watch.job_start, watch.seen) == ("SUBMITTED", 5, 0, "")
    jobs.claim(JOB, 1, "host/1", 777, 60_000)
    store.fire(JOB, [], frozenset(), False, "EXECUTING:777")
    (watch,) = store.watches()
    assert (watch.job_status, watch.job_revision, watch.job_start) == ("EXECUTING", 777, 777)
    assert watch.seen == watch.job_state == "EXECUTING:777"
    store.fire(JOB, [], frozenset(), False)  # no seen: kept
    assert store.watches()[0].seen == "EXECUTING:777"
