"""The JobStore protocol: every backend (SQL, in-memory) passes the same contract tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from nbjobs.models import Failure, Job, JobStatus

INPUT = "input"
OUTPUT = "output"


@dataclass(frozen=True)
class JobUpdate:
    """Fields a transition may set besides the status. None means leave unchanged."""

    failure: Failure | None = None
    results: dict[str, Any] | None = None
    progress_message: str | None = None
    progress_percent: int | None = None
    start_time: int | None = None
    end_time: int | None = None
    cancel_requested: bool | None = None
    worker_id: str | None = None
    lease_expires: int | None = None
    attempt: int | None = None


class JobStore(Protocol):
    """Durable job state. Every status change is a compare-and-set against the transition table."""

    def create(self, job: Job, notebook: bytes, *, max_active: int = 0) -> bool:
        """Insert a new SUBMITTED job and its input notebook in one transaction. With ``max_active`` > 0
        nothing is inserted (False) when its owner already has that many jobs not ended."""

    def get(self, job_id: str) -> Job | None:
        """The job, or None."""

    def list(
        self,
        *,
        username: str | None = None,
        statuses: frozenset[JobStatus] | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[Job]:
        """Jobs ordered by creation time, filtered by owner and status."""

    def count(self, *, username: str | None = None, statuses: frozenset[JobStatus] | None = None) -> int:
        """How many jobs ``list`` would return without paging."""

    def transition(
        self,
        job_id: str,
        target: JobStatus,
        now: int,
        *,
        attempt: int | None = None,
        update: JobUpdate | None = None,
        expected: frozenset[JobStatus] | None = None,
    ) -> Job | None:
        """Move to ``target`` if the table allows it from the current status (narrowed to ``expected``,
        and only for ``attempt`` when given).

        Returns the updated job, or None when the compare-and-set found nothing to change.
        """

    def claim_next(self, worker_id: str, now: int, lease_ms: int, *, per_user_cap: int = 0) -> Job | None:
        """Atomically move the oldest SUBMITTED job to EXECUTING for this worker (attempt + 1),
        skipping users who already have ``per_user_cap`` jobs running (0: no cap)."""

    def claim(
        self, job_id: str, attempt: int, worker_id: str, now: int, lease_ms: int, *, per_user_cap: int = 0
    ) -> Job | None:
        """Claim one SUBMITTED job whose attempt is ``attempt - 1``; None if taken, gone, or its user
        already has ``per_user_cap`` jobs running (0: no cap)."""

    def heartbeat(self, job_id: str, attempt: int, now: int, lease_ms: int) -> Job | None:
        """Renew the lease of a running attempt; None if this attempt no longer owns the job."""

    def set_progress(self, job_id: str, attempt: int, now: int, percent: int, message: str) -> bool:
        """Record progress of a running attempt; False if fenced out."""

    def set_processes(self, job_id: str, attempt: int, runner_pid: int, kernel_pid: int) -> bool:
        """Record the OS processes of a running attempt, for recovery after a crash."""

    def processes(self, job_id: str) -> tuple[int, int]:
        """(runner_pid, kernel_pid) last recorded for the job; zeros when unknown."""

    def expired(self, now: int) -> list[Job]:
        """Running jobs whose lease has expired."""

    def running_on(self, worker_prefix: str) -> list[Job]:
        """Running jobs whose worker id starts with ``worker_prefix``."""

    def put_blob(self, job_id: str, kind: str, data: bytes, now: int, *, attempt: int | None = None) -> bool:
        """Store a notebook blob; with ``attempt``, only while that attempt owns the job."""

    def get_blob(self, job_id: str, kind: str) -> bytes | None:
        """A stored blob, or None."""

    def delete_ended(self, *, ended_before: int | None = None, username: str | None = None) -> int:
        """Delete ended jobs (and their blobs); returns how many."""
