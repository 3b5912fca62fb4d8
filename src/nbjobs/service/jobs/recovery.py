"""Keeping the promise that no job stays EXECUTING forever: start-up recovery, the lease reaper and
the abandon at stop, for the server and the worker alike (``Recovery``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import psutil

from nbjobs.clock import Clock
from nbjobs.execution.processes import kill_process_tree
from nbjobs.models.events import NO_EVENTS, JobEvents
from nbjobs.models.jobs import RUNNING, Failure, FailureReason, Job, JobStatus, retry_or_end
from nbjobs.models.stores import JobStore, WorkerStore

log = logging.getLogger(__name__)


class Recovery:
    """Ends (or, by a job's ``retry_on_worker_lost`` policy, re-queues) the jobs of workers that are
    gone. Every write is fenced by the job's attempt, so a worker that was only slow loses nothing
    it still owns. ``requeued`` gets each job put back to SUBMITTED (to dispatch it again); ``wake``
    each job this process was running (so its supervisor stops the runner at once)."""

    def __init__(
        self,
        store: JobStore,
        workers: WorkerStore,
        clock: Clock,
        *,
        lease_ms: int,
        requeued: Callable[[Job], None] = lambda job: None,
        wake: Callable[[str], None] = lambda job_id: None,
        events: JobEvents = NO_EVENTS,
    ) -> None:
        self.store = store
        self.events = events  # told of each job this recovery ended (its fenced write won)
        self.workers = workers
        self.clock = clock
        self.lease_ms = lease_ms
        self.requeued = requeued
        self.wake = wake

    def after_restart(self, host_prefix: str, own_prefix: str) -> list[Job]:
        """End what earlier processes on this host left running, and kill the runners and kernels
        they left; jobs of this process (``own_prefix``) and of live workers on the host stay."""
        since = self.clock() - self.lease_ms
        live = [w.worker_id for w in self.workers.live(since) if w.worker_id != own_prefix]
        changed = recover_host(self.store, host_prefix, (own_prefix, *live), self.clock)
        for job in changed:
            log.warning("recovered job %s left by an earlier process: %s", job.job_id, job.status)
        self._dispatch_requeued(changed)
        return changed

    def reap_expired(self) -> list[Job]:
        """End every running job whose lease has expired (its worker stopped renewing it)."""
        changed = reap_expired(self.store, self.clock)
        self._dispatch_requeued(changed)
        return changed

    def abandon_running(self, worker_prefix: str, message: str) -> list[Job]:
        """End the jobs this process is running (worker ids under ``worker_prefix``) as lost: the drain
        at stop ran out of time. Their supervisors are woken and stop their runners and kernels."""
        changed = []
        for job in self.store.running_on(worker_prefix):
            ended = end_lost(self.store, job, self.clock, message)
            self.wake(job.job_id)
            if ended is not None:
                log.warning("job %s: %s; now %s", job.job_id, message, ended.status)
                changed.append(ended)
        self._dispatch_requeued(changed)
        return changed

    def _dispatch_requeued(self, jobs: list[Job]) -> None:
        """Dispatch the re-queued jobs again; report the ended ones (``jobs`` holds only won writes)."""
        for job in jobs:
            if job.status == JobStatus.SUBMITTED:
                self.requeued(job)
            elif job.ended:
                self.events.ended(job)


def end_lost(store: JobStore, job: Job, clock: Clock, message: str) -> Job | None:
    """End (or, by the job's policy, re-queue) a job whose worker is gone. Fenced by its attempt."""
    now = clock()
    if job.status == JobStatus.CANCELLING:
        failure = Failure(FailureReason.CANCELLED, f"The job was cancelled ({message})")
        status = JobStatus.CANCELLED
    else:
        failure = Failure(FailureReason.WORKER_LOST, message)
        status = JobStatus.FAILED
    target, update = retry_or_end(job, status, failure, now)
    if target == JobStatus.SUBMITTED:
        update = dataclasses.replace(update, progress_message=f"Re-queued: {message}")
        requeued = store.transition(
            job.job_id, target, now, attempt=job.attempt, update=update, expected=RUNNING
        )
        if requeued is not None:
            return requeued
        # cancelled meanwhile (CANCELLING never goes back to SUBMITTED): this attempt is the last
        _, update = retry_or_end(job, status, failure, now, may_retry=False)
    return store.transition(job.job_id, status, now, attempt=job.attempt, update=update, expected=RUNNING)


def reap_expired(store: JobStore, clock: Clock) -> list[Job]:
    """End every running job whose lease has expired; returns the jobs that changed."""
    changed = []
    for job in store.expired(clock()):
        ended = end_lost(store, job, clock, "the worker running the job stopped renewing its lease")
        if ended is not None:
            log.warning("job %s: worker %s lost; now %s", job.job_id, job.worker_id, ended.status)
            changed.append(ended)
    return changed


def recover_host(
    store: JobStore, host_prefix: str, current_boot: str | tuple[str, ...], clock: Clock
) -> list[Job]:
    """After a restart: end jobs an earlier boot of this host left running, and kill what they left.

    ``current_boot`` is the worker-id prefix (or prefixes) of processes alive now, whose jobs stay."""
    changed = []
    for job in store.running_on(host_prefix):
        if job.worker_id.startswith(current_boot):
            continue
        runner_pid, kernel_pid = store.processes(job.job_id)
        for pid in (kernel_pid, runner_pid):
            if pid and psutil.pid_exists(pid):
                kill_process_tree(pid)
        ended = end_lost(store, job, clock, "the server restarted while the job was running")
        if ended is not None:
            changed.append(ended)
    return changed
