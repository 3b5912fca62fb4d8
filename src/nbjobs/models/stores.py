"""What each store of jobs and of the system must do: jobs, the broker outbox, the worker registry,
usage, runtimes, configuration and logs. The portal's records (accounts, items, tasks, receivers, web
tools, notification rules) are in ``portal_stores.py``. store/ (SQL) and store/memory/ implement them;
tests/unit/contracts/ holds every pair to one suite.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from nbjobs.models.events import JobCount
from nbjobs.models.interactive import Container, ContainerStatus, OpenNotebook
from nbjobs.models.jobs import NO_FILTER, Job, JobFilter, JobStatus, JobUpdate, Waiting
from nbjobs.models.live import JobChange, LiveProgress
from nbjobs.models.logs import LogMessage, LogQuery
from nbjobs.models.runtimes import RuntimeSpec, StartStatus
from nbjobs.models.usage import JobUsage
from nbjobs.models.workers import WorkerRecord


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
        where: JobFilter = NO_FILTER,
    ) -> list[Job]:
        """Jobs ordered by creation time, filtered by owner, status and ``where``."""

    def count(
        self,
        *,
        username: str | None = None,
        statuses: frozenset[JobStatus] | None = None,
        where: JobFilter = NO_FILTER,
    ) -> int:
        """How many jobs ``list`` would return without paging."""

    def active_counts(self) -> builtins.list[JobCount]:
        """How many jobs not ended there are, by type, status and runtime name (the metrics' gauge)."""

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

    def set_progress(
        self,
        job_id: str,
        attempt: int,
        now: int,
        percent: int,
        message: str,
        live: LiveProgress | None = None,
    ) -> bool:
        """Record progress (and, with ``live``, the attempt's live view) of a running attempt in one
        transaction; False if fenced out. ``transition`` writes ``JobUpdate.live`` the same way."""

    def live(self, job_id: str) -> LiveProgress | None:
        """The live view last recorded for the job (of whichever attempt wrote it), or None."""

    def changes(
        self, since: int, *, username: str | None = None, limit: int = 500
    ) -> builtins.list[JobChange]:
        """Jobs (of ``username``, if given) whose revision is after ``since``, oldest change first."""

    def set_processes(self, job_id: str, attempt: int, runner_pid: int, kernel_pid: int) -> bool:
        """Record the OS processes of a running attempt, for recovery after a crash."""

    def processes(self, job_id: str) -> tuple[int, int]:
        """(runner_pid, kernel_pid) last recorded for the job; zeros when unknown."""

    def expired(self, now: int) -> builtins.list[Job]:
        """Running jobs whose lease has expired."""

    def running_on(self, worker_prefix: str) -> builtins.list[Job]:
        """Running jobs whose worker id starts with ``worker_prefix``."""

    def put_blob(self, job_id: str, kind: str, data: bytes, now: int, *, attempt: int | None = None) -> bool:
        """Store a notebook blob; with ``attempt``, only while that attempt owns the job."""

    def get_blob(self, job_id: str, kind: str) -> bytes | None:
        """A stored blob, or None."""

    def delete_ended(self, *, ended_before: int | None = None, username: str | None = None) -> int:
        """Delete ended jobs (and their blobs); returns how many."""


class RuntimeStore(Protocol):
    def add(self, spec: RuntimeSpec) -> None:
        """Insert a runtime; InvalidRequest if its name (case-insensitive) or id is taken."""

    def get(self, runtime_id: str) -> RuntimeSpec | None:
        """The runtime with this id, or None."""

    def get_by_name(self, name: str) -> RuntimeSpec | None:
        """The runtime with this name (compared case-insensitively), or None."""

    def list(self) -> list[RuntimeSpec]:
        """All runtimes: the default first, then by creation time."""

    def save(self, spec: RuntimeSpec) -> None:
        """Replace the stored fields of an existing runtime; InvalidRequest if the new name is taken.
        ``start_status`` stays as stored: only ``record_start_status`` writes it."""

    def delete(self, runtime_id: str) -> bool:
        """Forget a runtime; False if unknown."""

    def record_start_status(self, runtime_id: str, status: StartStatus | None) -> None:
        """Set only the runtime's start status (None: not reported yet); a no-op if the runtime is gone."""


class ConfigStore(Protocol):
    def load(self) -> dict[str, Any]:
        """Every stored override, by ArcGIS property name."""

    def replace(self, values: dict[str, Any], now: int) -> None:
        """Make ``values`` the complete set of overrides, in one transaction."""


class WorkerStore(Protocol):
    """The registry of `nbjobs worker` processes, renewed by their heartbeats."""

    def register(self, worker: WorkerRecord) -> None:
        """Insert or replace a worker's row."""

    def beat(self, worker_id: str, now: int, state: str | None = None) -> bool:
        """Renew a worker's heartbeat (and state); False if its row is gone (it was pruned)."""

    def remove(self, worker_id: str) -> None:
        """Forget a worker (it stopped)."""

    def live(self, since: int) -> list[WorkerRecord]:
        """Workers whose last heartbeat is at or after ``since``, by host and start time."""

    def prune(self, before: int) -> int:
        """Forget workers silent since before ``before``; returns how many."""


class Outbox(Protocol):
    """What the job table says about publishing SUBMITTED jobs to a broker (distributed mode)."""

    def mark_dispatched(self, job_ids: Iterable[str], now: int) -> None:
        """Record that these jobs' messages were published at ``now``."""

    def due(
        self, *, created_before: int, dispatched_before: int, now: int, limit: int = 500
    ) -> list[Waiting]:
        """SUBMITTED jobs that may run at ``now`` and were never published (created before
        ``created_before``), last published before ``dispatched_before``, or are retries not published
        since their backoff ended; oldest first."""

    def waiting_counts(self) -> dict[str, int]:
        """SUBMITTED jobs per runtime id."""


class LogStore(Protocol):
    """The ArcGIS ``logs`` resource's messages (newest first) and its settings (a few named values)."""

    def add(self, messages: Sequence[LogMessage]) -> None:
        """Keep ``messages`` (one batch, one transaction)."""

    def query(self, query: LogQuery) -> builtins.list[LogMessage]:
        """Up to ``query.limit`` matching messages, newest first (ties: the later kept first)."""

    def delete_before(self, before: int) -> int:
        """Forget messages older than ``before`` (epoch ms); returns how many."""

    def clear(self) -> int:
        """Forget every message; returns how many."""

    def load_settings(self) -> dict[str, Any]:
        """The stored settings by ArcGIS name (empty: the defaults)."""

    def save_settings(self, values: dict[str, Any], now: int) -> None:
        """Store these settings (by name; names not given keep their value)."""


class UsageStore(Protocol):
    """What jobs used: the statistics resource's one read."""

    def usage(self, since: int, limit: int = 200_000) -> builtins.list[JobUsage]:
        """Jobs that ended at or after ``since``, and every job not ended yet (at most ``limit``)."""


class ContainerStore(Protocol):
    """Interactive notebooks: users' Jupyter servers ("containers") and the notebooks open in them."""

    def add(self, container: Container) -> bool:
        """Insert a live container; False when its user already has a live one for that runtime."""

    def get(self, container_id: str) -> Container | None: ...

    def live_for(self, username: str, runtime_id: str) -> Container | None:
        """The user's live container for the runtime, if any."""

    def update(
        self,
        container_id: str,
        *,
        expected: Iterable[ContainerStatus] | None = None,
        status: ContainerStatus | None = None,
        **values: Any,
    ) -> Container | None:
        """Change fields (from an ``expected`` status only, when given); None when nothing matched."""

    def list(
        self,
        *,
        username: str | None = None,
        node: str | None = None,
        statuses: Iterable[ContainerStatus] | None = None,
    ) -> builtins.list[Container]: ...

    def count_live(self, *, node: str | None = None) -> int: ...

    def touch(self, container_id: str, now: int) -> None:
        """Record activity in the container and its open notebooks (never moves time back)."""

    def add_notebook(self, notebook: OpenNotebook) -> None: ...

    def get_notebook(self, notebook_id: str) -> OpenNotebook | None: ...

    def open_notebook_of(self, container_id: str, item_id: str) -> OpenNotebook | None: ...

    def notebooks(
        self,
        *,
        username: str | None = None,
        container_id: str | None = None,
        open_only: bool = True,
        limit: int = 1000,
        offset: int = 0,
    ) -> builtins.list[OpenNotebook]: ...

    def count_notebooks(
        self, *, username: str | None = None, container_id: str | None = None, open_only: bool = True
    ) -> int: ...

    def close_notebook(self, notebook_id: str, now: int, reason: str) -> bool:
        """Mark an open notebook closed; False when it was closed already or is unknown."""

    def close_notebooks_of(self, container_id: str, now: int, reason: str) -> int: ...
