"""One contract suite over every JobStore: in-memory, SQLite, PostgreSQL."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from nbjobs.models.events import JobCount
from nbjobs.models.jobs import (
    ENDED,
    Failure,
    FailureReason,
    Job,
    JobInputs,
    JobStatus,
    JobType,
    JobUpdate,
    new_job_id,
)
from nbjobs.models.parameters import parse_parameters
from nbjobs.models.runtimes import DEFAULT_RUNTIME, Runtime
from nbjobs.models.stores import JobStore
from nbjobs.settings import load_settings
from nbjobs.store.engine import open_store
from nbjobs.store.jobs import SqlJobStore
from nbjobs.store.memory.jobs import MemoryJobStore
from tests.unit.contracts.common import assert_implements

LEASE = 60_000


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path: Path):
    if request.param == "memory":
        s = MemoryJobStore()
    elif request.param == "sqlite":
        s = open_store(load_settings({}, data_dir=tmp_path))
    else:
        url = request.getfixturevalue("postgres_url")
        s = open_store(load_settings({}, data_dir=tmp_path, database_url=url))
    yield s
    s.close()


def make_job(created: int = 1000, username: str = "alice", **inputs) -> Job:
    return Job(
        job_id=new_job_id(),
        type=JobType.EXECUTE_NOTEBOOK,
        username=username,
        status=JobStatus.SUBMITTED,
        inputs=JobInputs(**inputs),
        runtime=DEFAULT_RUNTIME,
        date_created=created,
        revision=created,
    )


def test_create_then_get_round_trips_every_field(store):
    job = make_job(
        item_id="a" * 32,
        notebook_parameters=parse_parameters({"x": [1, {"y": None}]}),
        execution_timeout_minutes=5,
        save_injected_parameters=True,
        run_id="r1",
        task_id="t1",
    )
    store.create(job, b"{}")
    assert store.get(job.job_id) == job
    assert store.get_blob(job.job_id, "input") == b"{}"
    assert store.get_blob(job.job_id, "output") is None
    assert store.get("j" + "0" * 32) is None


def test_claim_next_takes_oldest_and_fences_attempts(store):
    older, newer = make_job(1000), make_job(2000)
    store.create(newer, b"n")
    store.create(older, b"o")
    claimed = store.claim_next("w1", 5000, LEASE)
    assert claimed.job_id == older.job_id
    assert claimed.status == JobStatus.EXECUTING and claimed.attempt == 1
    assert claimed.start_time == 5000 and claimed.lease_expires == 5000 + LEASE and claimed.worker_id == "w1"
    assert store.claim_next("w2", 5000, LEASE).job_id == newer.job_id
    assert store.claim_next("w3", 5000, LEASE) is None


def test_claim_by_id_is_a_compare_and_set_on_attempt(store):
    job = make_job()
    store.create(job, b"")
    assert store.claim(job.job_id, 2, "w", 1, LEASE) is None  # wrong attempt
    assert store.claim(job.job_id, 1, "w", 1, LEASE).attempt == 1
    assert store.claim(job.job_id, 1, "w", 1, LEASE) is None  # duplicate delivery does nothing


def test_concurrent_claims_never_hand_one_job_to_two_workers(store):
    for i in range(20):
        store.create(make_job(i), b"")
    won: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        while (job := store.claim_next(f"w{n}", 10, LEASE)) is not None:
            with lock:
                won.append(job.job_id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 20 and len(set(won)) == 20


def test_transitions_follow_the_table_and_never_go_backwards(store):
    job = make_job()
    store.create(job, b"")
    assert store.transition(job.job_id, JobStatus.COMPLETED, 5) is None  # SUBMITTED cannot complete
    store.claim_next("w", 10, LEASE)
    done = store.transition(
        job.job_id, JobStatus.COMPLETED, 20, attempt=1, update=JobUpdate(results={"a": 1})
    )
    assert done.status == JobStatus.COMPLETED and done.end_time == 20 and done.results == {"a": 1}
    assert done.lease_expires == 0
    for target in JobStatus:
        assert store.transition(job.job_id, target, 30) is None
    assert store.get(job.job_id).status == JobStatus.COMPLETED


def test_late_writer_with_an_old_attempt_is_fenced_out(store):
    job = make_job()
    store.create(job, b"")
    store.claim_next("w", 10, LEASE)
    requeued = store.transition(job.job_id, JobStatus.SUBMITTED, 11, attempt=1)
    assert requeued.status == JobStatus.SUBMITTED
    second = store.claim_next("w2", 12, LEASE)
    assert second.attempt == 2
    assert store.transition(job.job_id, JobStatus.FAILED, 13, attempt=1) is None
    assert not store.set_progress(job.job_id, 1, 13, 50, "old")
    assert store.heartbeat(job.job_id, 1, 13, LEASE) is None
    assert not store.put_blob(job.job_id, "output", b"stale", 13, attempt=1)
    assert store.set_progress(job.job_id, 2, 14, 50, "half")
    assert store.get(job.job_id).progress_message == "half"


def test_expected_narrows_the_sources(store):
    job = make_job()
    store.create(job, b"")
    store.claim_next("w", 10, LEASE)
    assert (
        store.transition(job.job_id, JobStatus.CANCELLED, 11, expected=frozenset({JobStatus.SUBMITTED}))
        is None
    )
    assert store.transition(job.job_id, JobStatus.CANCELLING, 11).status == JobStatus.CANCELLING


def test_failure_round_trips(store):
    job = make_job()
    store.create(job, b"")
    store.claim_next("w", 10, LEASE)
    failure = Failure(
        FailureReason.CELL_ERROR,
        "ValueError: x",
        cell_index=3,
        ename="ValueError",
        evalue="x",
        traceback=("line 1", "line 2"),
    )
    ended = store.transition(job.job_id, JobStatus.FAILED, 20, update=JobUpdate(failure=failure))
    assert ended.failure == failure
    assert store.get(job.job_id).failure == failure


def test_heartbeat_extends_the_lease_and_expired_finds_stale_jobs(store):
    a, b = make_job(1), make_job(2)
    store.create(a, b"")
    store.create(b, b"")
    store.claim_next("w", 0, 1000)
    store.claim_next("w", 0, 1000)
    assert store.heartbeat(a.job_id, 1, 900, 1000).lease_expires == 1900
    assert [j.job_id for j in store.expired(1500)] == [b.job_id]
    assert {j.job_id for j in store.running_on("w")} == {a.job_id, b.job_id}
    assert store.running_on("other") == []


def test_blobs_replace_and_processes_are_recorded(store):
    job = make_job()
    store.create(job, b"in")
    store.claim_next("w", 0, LEASE)
    assert store.put_blob(job.job_id, "output", b"one", 1, attempt=1)
    assert store.put_blob(job.job_id, "output", b"two" * 1000, 2)
    assert store.get_blob(job.job_id, "output") == b"two" * 1000
    assert store.set_processes(job.job_id, 1, 111, 222)
    assert store.processes(job.job_id) == (111, 222)


def test_list_count_filters_and_pages(store):
    jobs = [make_job(i, username="alice" if i % 2 else "bob") for i in range(10)]
    for job in jobs:
        store.create(job, b"")
    assert store.count() == 10
    assert store.count(username="alice") == 5
    assert [j.job_id for j in store.list(limit=3)] == [j.job_id for j in jobs[:3]]
    assert [j.job_id for j in store.list(limit=3, offset=3)] == [j.job_id for j in jobs[3:6]]
    assert store.list(newest_first=True, limit=1)[0].job_id == jobs[-1].job_id
    store.claim_next("w", 50, LEASE)
    assert store.count(statuses=frozenset({JobStatus.EXECUTING})) == 1
    assert {j.username for j in store.list(username="bob")} == {"bob"}


def test_delete_ended_removes_only_ended_jobs_and_their_blobs(store):
    running, waiting, old, recent, others = (make_job(i) for i in range(5))
    for job in (running, waiting, old, recent):
        store.create(job, b"x")
    store.create(dataclass_replace(others, username="bob"), b"x")
    store.claim_next("w", 0, LEASE)  # running
    store.transition(waiting.job_id, JobStatus.SUBMITTED, 0)  # stays SUBMITTED (no-op)
    for job, end in ((old, 100), (recent, 900), (others, 100)):
        store.transition(job.job_id, JobStatus.CANCELLED, end)
    assert store.delete_ended(ended_before=500, username="alice") == 1
    assert store.get(old.job_id) is None and store.get_blob(old.job_id, "input") is None
    assert store.get(recent.job_id) is not None and store.get(others.job_id) is not None
    assert store.delete_ended() == 2
    remaining = {j.job_id: j.status for j in store.list()}
    assert remaining == {running.job_id: JobStatus.EXECUTING, waiting.job_id: JobStatus.SUBMITTED}
    assert not set(remaining.values()) & ENDED


def dataclass_replace(job: Job, **changes) -> Job:
    import dataclasses

    return dataclasses.replace(job, **changes)


def test_claim_next_skips_users_at_their_cap_and_keeps_their_jobs_waiting(store):
    a1, a2, b1 = make_job(1, "alice"), make_job(2, "alice"), make_job(3, "bob")
    for job in (a1, a2, b1):
        store.create(job, b"")
    assert store.claim_next("w", 10, LEASE, per_user_cap=1).job_id == a1.job_id
    assert store.claim_next("w", 10, LEASE, per_user_cap=1).job_id == b1.job_id  # alice's second waits
    assert store.claim_next("w", 10, LEASE, per_user_cap=1) is None
    assert store.get(a2.job_id).status == JobStatus.SUBMITTED
    store.transition(a1.job_id, JobStatus.COMPLETED, 20)
    assert store.claim_next("w", 30, LEASE, per_user_cap=1).job_id == a2.job_id


def test_claim_by_id_respects_the_per_user_cap(store):
    first, second = make_job(1, "alice"), make_job(2, "alice")
    store.create(first, b"")
    store.create(second, b"")
    assert store.claim(first.job_id, 1, "w", 10, LEASE, per_user_cap=1) is not None
    assert store.claim(second.job_id, 1, "w", 10, LEASE, per_user_cap=1) is None  # waits, still SUBMITTED
    assert store.get(second.job_id).status == JobStatus.SUBMITTED
    store.transition(first.job_id, JobStatus.COMPLETED, 20)
    assert store.claim(second.job_id, 1, "w", 30, LEASE, per_user_cap=1).attempt == 1


def test_implementations_match_the_protocol():
    assert_implements(JobStore, SqlJobStore, MemoryJobStore)


def test_create_with_max_active_counts_the_owner_s_jobs_not_ended(store):
    first, second, third = make_job(1, "alice"), make_job(2, "alice"), make_job(3, "alice")
    assert store.create(first, b"1", max_active=2) and store.create(second, b"2", max_active=2)
    assert store.create(third, b"3", max_active=2) is False
    assert store.get(third.job_id) is None and store.get_blob(third.job_id, "input") is None
    assert store.create(make_job(4, "bob"), b"", max_active=2)  # another owner's count is their own
    store.transition(first.job_id, JobStatus.CANCELLED, 10)
    assert store.create(third, b"3", max_active=2)
    assert store.count(username="alice") == 3


def test_processes_are_zeros_until_recorded_and_only_for_the_running_attempt(store):
    job = make_job()
    store.create(job, b"")
    assert store.processes(job.job_id) == (0, 0) and store.processes("j" + "0" * 32) == (0, 0)
    assert not store.set_processes(job.job_id, 1, 111, 222)  # not running yet
    store.claim_next("w", 0, LEASE)
    assert not store.set_processes(job.job_id, 2, 111, 222)
    assert store.set_processes(job.job_id, 1, 111, 222)
    assert store.processes(job.job_id) == (111, 222)


def test_running_on_takes_the_prefix_literally(store):
    for worker_id in ("aXb/1/0", "A_B/1/0", "a_b/1/0", "a%b/1/0"):
        job = make_job()
        store.create(job, b"")
        store.claim(job.job_id, 1, worker_id, 0, LEASE)
    assert [j.worker_id for j in store.running_on("a_b/")] == ["a_b/1/0"]  # "_" is no wildcard
    assert [j.worker_id for j in store.running_on("a%")] == ["a%b/1/0"]  # nor is "%"
    assert store.running_on("A_B/1/") != store.running_on("a_b/1/")  # and case counts
    assert len(store.running_on("")) == 4


def test_active_counts_group_jobs_not_ended_by_type_status_and_runtime(store):
    other = Runtime("rt-2", "Python 3 Advanced", "11.0", "python3")
    waiting, running, done = make_job(1000), make_job(1001), make_job(1002)
    advanced = replace(make_job(1003), runtime=other)
    for job in (waiting, running, done, advanced):
        assert store.create(job, b"{}")
    store.claim(running.job_id, 1, "w/0", 2000, LEASE)
    store.claim(done.job_id, 1, "w/0", 2000, LEASE)
    store.transition(done.job_id, JobStatus.COMPLETED, 2100, attempt=1)
    ex = JobType.EXECUTE_NOTEBOOK
    assert sorted(store.active_counts(), key=lambda c: (c.status, c.runtime)) == [
        JobCount(ex, JobStatus.EXECUTING, DEFAULT_RUNTIME.name, 1),
        JobCount(ex, JobStatus.SUBMITTED, "Python 3 Advanced", 1),
        JobCount(ex, JobStatus.SUBMITTED, DEFAULT_RUNTIME.name, 1),
    ]
