"""Keeping the promise that no job stays EXECUTING forever: the reaper and start-up recovery."""

from __future__ import annotations

import logging

import psutil

from nbjobs.clock import Clock
from nbjobs.execution.processes import kill_process_tree
from nbjobs.models.jobs import Failure, FailureReason, Job, JobStatus, JobUpdate
from nbjobs.models.stores import JobStore

log = logging.getLogger(__name__)


def end_lost(store: JobStore, job: Job, clock: Clock, message: str) -> Job | None:
    """End (or, by the job's policy, re-queue) a job whose worker is gone. Fenced by its attempt."""
    now = clock()
    if job.status == JobStatus.EXECUTING and job.attempt <= job.retry_on_worker_lost:
        requeued = store.transition(
            job.job_id,
            JobStatus.SUBMITTED,
            now,
            attempt=job.attempt,
            update=JobUpdate(worker_id="", lease_expires=0, progress_message=f"Re-queued: {message}"),
        )
        if requeued is not None:
            return requeued
    if job.status == JobStatus.CANCELLING:
        failure = Failure(FailureReason.CANCELLED, f"The job was cancelled ({message})")
        return store.transition(
            job.job_id, JobStatus.CANCELLED, now, attempt=job.attempt, update=JobUpdate(failure=failure)
        )
    failure = Failure(FailureReason.WORKER_LOST, message)
    return store.transition(
        job.job_id, JobStatus.FAILED, now, attempt=job.attempt, update=JobUpdate(failure=failure)
    )


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
