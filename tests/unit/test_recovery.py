"""Recovery, as the server and the worker both use it: start-up recovery that spares live workers,
the lease reaper that re-dispatches what it re-queues, and the abandon at stop that wakes supervisors."""

from __future__ import annotations

import pytest

from nbjobs.clock import ManualClock
from nbjobs.models.accounts import Principal
from nbjobs.models.jobs import FailureReason, Job, JobStatus
from nbjobs.models.workers import WorkerRecord
from nbjobs.service.jobs.recovery import Recovery
from nbjobs.service.jobs.service import JobService
from nbjobs.settings import load_settings
from nbjobs.store.memory.jobs import MemoryJobStore
from nbjobs.store.memory.workers import MemoryWorkerStore

ALICE = Principal("alice")
LEASE = 60_000


@pytest.fixture
def parts(tmp_path):
    clock = ManualClock()
    store = MemoryJobStore()
    workers = MemoryWorkerStore()
    requeued: list[Job] = []
    woken: list[str] = []
    recovery = Recovery(store, workers, clock, lease_ms=LEASE, requeued=requeued.append, wake=woken.append)
    jobs = JobService(store, load_settings({}, data_dir=tmp_path), clock)
    return clock, store, workers, recovery, jobs, requeued, woken


def _live_worker(worker_id: str, now: int) -> WorkerRecord:
    return WorkerRecord(worker_id, worker_id.split("/")[0], 1, (), (), 1, "online", "0", now, now)


def test_after_restart_ends_an_earlier_process_but_spares_this_one_and_live_workers(parts):
    clock, store, workers, recovery, jobs, requeued, _ = parts
    earlier, mine, live_worker, other_host = (jobs.submit(ALICE, b"nb") for _ in range(4))
    store.claim(earlier.job_id, 1, "host/1-old/0", clock(), LEASE)
    store.claim(mine.job_id, 1, "host/2-new/0", clock(), LEASE)
    store.claim(live_worker.job_id, 1, "host/3-w/0", clock(), LEASE)
    store.claim(other_host.job_id, 1, "elsewhere/1-x/0", clock(), LEASE)
    workers.register(_live_worker("host/3-w", clock()))
    changed = recovery.after_restart("host/", "host/2-new")
    assert [j.job_id for j in changed] == [earlier.job_id]
    assert store.get(earlier.job_id).failure.reason == FailureReason.WORKER_LOST
    for job in (mine, live_worker, other_host):
        assert store.get(job.job_id).status == JobStatus.EXECUTING
    assert requeued == []


def test_a_requeued_job_is_handed_to_the_dispatcher(parts):
    clock, store, _, recovery, jobs, requeued, _ = parts
    job = jobs.submit(ALICE, b"nb", retry_on_worker_lost=1)
    store.claim_next("host/1-a/0", clock(), LEASE)
    clock.advance(LEASE + 1)
    [again] = recovery.reap_expired()
    assert again.status == JobStatus.SUBMITTED
    assert [j.job_id for j in requeued] == [job.job_id]


def test_abandon_ends_this_process_jobs_and_wakes_their_supervisors(parts):
    clock, store, _, recovery, jobs, requeued, woken = parts
    mine, retried, theirs = (jobs.submit(ALICE, b"nb", retry_on_worker_lost=n) for n in (0, 1, 0))
    store.claim(mine.job_id, 1, "host/1-me/0", clock(), LEASE)
    store.claim(retried.job_id, 1, "host/1-me/1", clock(), LEASE)
    store.claim(theirs.job_id, 1, "host/2-other/0", clock(), LEASE)
    changed = recovery.abandon_running("host/1-me/", "the server was stopped before the job finished")
    assert {j.job_id: j.status for j in changed} == {
        mine.job_id: JobStatus.FAILED,
        retried.job_id: JobStatus.SUBMITTED,
    }
    assert "stopped before the job finished" in store.get(mine.job_id).failure.message
    assert sorted(woken) == sorted([mine.job_id, retried.job_id])
    assert [j.job_id for j in requeued] == [retried.job_id]
    assert store.get(theirs.job_id).status == JobStatus.EXECUTING


def test_a_second_reaper_with_a_stale_view_cannot_fail_a_requeued_job(parts):
    """Server and workers all reap: two may read the same expired job. The first re-queues it by its
    policy; the second's write, fenced by status (running only) as well as attempt, changes nothing.
    (Found by the Celery kill -9 test under load: SUBMITTED -> FAILED is a legal move, so an attempt
    fence alone let the stale reaper fail the job it had just seen re-queued.)"""
    from nbjobs.service.jobs.recovery import end_lost

    clock, store, _, _, jobs, _, _ = parts
    job = jobs.submit(ALICE, b"nb", retry_on_worker_lost=1)
    store.claim_next("host/1-a/0", clock(), LEASE)
    clock.advance(LEASE + 1)
    [stale] = store.expired(clock())  # both reapers read the job while it is EXECUTING
    first = end_lost(store, stale, clock, "lost")
    assert first is not None and first.status == JobStatus.SUBMITTED
    assert end_lost(store, stale, clock, "lost") is None
    assert store.get(job.job_id).status == JobStatus.SUBMITTED
