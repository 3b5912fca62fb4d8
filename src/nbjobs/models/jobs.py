"""The job model: frozen data, wire enums and the one transition table.

Times are integers in epoch milliseconds (UTC), because that is what the ArcGIS wire format carries
and what every store can compare without dialect quirks.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nbjobs.models.live import LiveProgress
from nbjobs.models.parameters import NotebookParameters
from nbjobs.models.runtimes import Runtime

_BASE36 = string.digits + string.ascii_lowercase


def new_job_id() -> str:
    """Return a fresh job id: ``j`` followed by 32 lowercase base36 characters."""
    return "j" + "".join(secrets.choice(_BASE36) for _ in range(32))


def is_job_id(text: str) -> bool:
    """True when ``text`` has the shape of a job id this server issues."""
    return len(text) == 33 and text[0] == "j" and all(c in _BASE36 for c in text[1:])


class JobType(StrEnum):
    EXECUTE_NOTEBOOK = "executeNotebook"
    OPEN_NOTEBOOK = "openNotebook"
    EXECUTE_NOTEBOOK_AS_WEB_TOOL = "executeNotebookAsWebTool"


class JobStatus(StrEnum):
    """Wire statuses. The ArcGIS client polls for exactly these words, so there are no others."""

    SUBMITTED = "SUBMITTED"
    EXECUTING = "EXECUTING"
    CANCELLING = "CANCELLING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def ended(self) -> bool:
        return self in ENDED


ENDED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
RUNNING = frozenset({JobStatus.EXECUTING, JobStatus.CANCELLING})


class FailureReason(StrEnum):
    """Why a job ended other than COMPLETED; kept apart from the status word."""

    CELL_ERROR = "cell_error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    KERNEL_DIED = "kernel_died"
    KERNEL_NOT_FOUND = "kernel_not_found"
    MEMORY_LIMIT = "memory_limit"
    WORKER_LOST = "worker_lost"
    INVALID_NOTEBOOK = "invalid_notebook"
    INVALID_PARAMETERS = "invalid_parameters"
    RUNNER_ERROR = "runner_error"
    OUTPUT_MISSING = "output_missing"  # a registered output (web tool) the notebook never set
    NOTEBOOK_SERVER_FAILED = "notebook_server_failed"  # openNotebook: the Jupyter server did not start


# The one transition table. Every write is ``UPDATE … WHERE status IN (allowed sources)``, so a late or
# duplicate writer finds zero rows and cannot move a job backwards.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.SUBMITTED: frozenset({JobStatus.EXECUTING, JobStatus.CANCELLED, JobStatus.FAILED}),
    # EXECUTING -> SUBMITTED is the opt-in re-run of a job whose worker was lost.
    JobStatus.EXECUTING: frozenset(
        {JobStatus.CANCELLING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.SUBMITTED}
    ),
    # A run can finish on its own while the cancel is on its way; the first writer wins.
    JobStatus.CANCELLING: frozenset({JobStatus.CANCELLED, JobStatus.COMPLETED, JobStatus.FAILED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Statuses from which ``target`` may be reached."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def can_transition(source: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[source]


@dataclass(frozen=True)
class JobInputs:
    """What the submitter asked for; rendered as the job's ``inputs`` object.

    ``notebook_parameters`` is parsed where a request comes in, never below. ``from_wire`` (a job read
    back from the store) wraps the stored object with ``NotebookParameters.trusted``: no check and no
    rendering on read, because every read of a job (views, polls, the reaper) would pay for it and the
    store holds only what a parse accepted. The literals are rendered once, on first use, by the run.
    """

    item_id: str = ""
    execution_timeout_minutes: int | None = None
    update_portal_item: bool = True
    save_injected_parameters: bool = False
    notebook_parameters: NotebookParameters = field(default_factory=NotebookParameters)
    run_id: str = ""
    task_id: str = ""
    webhook_receiver_id: str = ""  # set on jobs a webhook receiver started
    output_names: tuple[str, ...] = ()  # variables read back after the run (web tool outputs)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "itemId": self.item_id,
            "executionTimeoutInMinutes": self.execution_timeout_minutes,
            "updatePortalItem": self.update_portal_item,
            "saveInjectedParameters": self.save_injected_parameters,
            "notebookParameters": self.notebook_parameters.to_wire(),
            "runId": self.run_id,
            "taskId": self.task_id,
        }
        if self.webhook_receiver_id:
            wire["webhookReceiverId"] = self.webhook_receiver_id
        if self.output_names:
            wire["outputNames"] = list(self.output_names)
        return wire

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> JobInputs:
        return cls(
            item_id=data.get("itemId", ""),
            execution_timeout_minutes=data.get("executionTimeoutInMinutes"),
            update_portal_item=data.get("updatePortalItem", True),
            save_injected_parameters=data.get("saveInjectedParameters", False),
            notebook_parameters=NotebookParameters.trusted(data.get("notebookParameters") or {}),
            run_id=data.get("runId", ""),
            task_id=data.get("taskId", ""),
            webhook_receiver_id=data.get("webhookReceiverId", ""),
            output_names=tuple(data.get("outputNames") or ()),
        )


@dataclass(frozen=True)
class Failure:
    """Why a job did not complete: the reason word, a human message and, for cell errors, where."""

    reason: FailureReason
    message: str
    cell_index: int | None = None
    ename: str | None = None
    evalue: str | None = None
    traceback: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": str(self.reason), "message": self.message}
        if self.cell_index is not None:
            out.update(
                cellIndex=self.cell_index,
                ename=self.ename,
                evalue=self.evalue,
                traceback=list(self.traceback),
            )
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Failure:
        return cls(
            reason=FailureReason(data["reason"]),
            message=data.get("message", ""),
            cell_index=data.get("cellIndex"),
            ename=data.get("ename"),
            evalue=data.get("evalue"),
            traceback=tuple(data.get("traceback") or ()),
        )


# Failure reasons a retry policy may name. Never a cancel (the user asked for the end), nor what another
# attempt cannot change (a notebook or parameters that are invalid, a kernel that is not installed).
RETRYABLE = frozenset(
    {
        FailureReason.WORKER_LOST,
        FailureReason.KERNEL_DIED,
        FailureReason.TIMEOUT,
        FailureReason.CELL_ERROR,
        FailureReason.MEMORY_LIMIT,
        FailureReason.RUNNER_ERROR,
        FailureReason.OUTPUT_MISSING,
    }
)
DEFAULT_RETRY_ON = frozenset({FailureReason.WORKER_LOST, FailureReason.KERNEL_DIED})
MAX_RETRIES = 10
MAX_RETRY_INTERVAL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed attempt runs again, as the same job with the next attempt number.

    ``max_retries`` more attempts at most; before attempt n + 1 the job waits
    ``min_interval_seconds * 2 ** (n - 1)`` (exponential backoff, capped at a day); a timeout retries
    only with ``retry_on_timeout``; other reasons when listed in ``retry_on`` (default: the worker was
    lost or the kernel died — what a new process can fix)."""

    max_retries: int = 0
    min_interval_seconds: float = 0.0
    retry_on_timeout: bool = False
    retry_on: frozenset[FailureReason] = DEFAULT_RETRY_ON

    def applies(self, reason: FailureReason, attempt: int) -> bool:
        """True when the failure of attempt ``attempt`` (1-based) for ``reason`` is retried."""
        if attempt > self.max_retries or reason not in RETRYABLE:
            return False
        if reason == FailureReason.TIMEOUT:
            return self.retry_on_timeout or reason in self.retry_on
        return reason in self.retry_on

    def delay_ms(self, attempt: int) -> int:
        """How long after the end of attempt ``attempt`` the next one may start."""
        seconds = self.min_interval_seconds * 2 ** max(attempt - 1, 0)
        return int(min(seconds, MAX_RETRY_INTERVAL_SECONDS) * 1000)

    def to_wire(self) -> dict[str, Any]:
        return {
            "maxRetries": self.max_retries,
            "minRetryIntervalSeconds": self.min_interval_seconds,
            "retryOnTimeout": self.retry_on_timeout,
            "retryOn": sorted(str(r) for r in self.retry_on),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any] | None) -> RetryPolicy:
        """The policy this server stored (trusted: checked when it was given)."""
        if not data:
            return cls()
        return cls(
            max_retries=int(data.get("maxRetries", 0)),
            min_interval_seconds=float(data.get("minRetryIntervalSeconds", 0.0)),
            retry_on_timeout=bool(data.get("retryOnTimeout", False)),
            retry_on=frozenset(FailureReason(r) for r in data.get("retryOn", DEFAULT_RETRY_ON)),
        )


NO_RETRIES = RetryPolicy()


@dataclass(frozen=True)
class Attempt:
    """One ended attempt of a job, as its history shows it."""

    attempt: int
    start_time: int
    end_time: int
    worker_id: str
    status: JobStatus  # how it ended: FAILED (retried or not), COMPLETED or CANCELLED
    failure: Failure | None = None
    retried: bool = False  # a next attempt followed

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attempt": self.attempt,
            "startTime": self.start_time,
            "endTime": self.end_time,
            "workerId": self.worker_id,
            "status": str(self.status),
            "retried": self.retried,
        }
        if self.failure is not None:
            out["failure"] = {"reason": str(self.failure.reason), "message": self.failure.message}
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Attempt:
        failure = data.get("failure")
        return cls(
            attempt=int(data["attempt"]),
            start_time=int(data.get("startTime", 0)),
            end_time=int(data.get("endTime", 0)),
            worker_id=str(data.get("workerId", "")),
            status=JobStatus(data["status"]),
            failure=Failure(FailureReason(failure["reason"]), failure.get("message", ""))
            if failure
            else None,
            retried=bool(data.get("retried", False)),
        )


@dataclass(frozen=True)
class Job:
    """One unit of work as stored. Rendering to the ArcGIS views lives in the web layer."""

    job_id: str
    type: JobType
    username: str
    status: JobStatus
    inputs: JobInputs
    runtime: Runtime
    date_created: int
    revision: int
    start_time: int = 0
    end_time: int = 0
    attempt: int = 0
    failure: Failure | None = None
    results: dict[str, Any] = field(default_factory=dict)
    progress_message: str = ""
    progress_percent: int = 0
    cancel_requested: bool = False
    worker_id: str = ""
    lease_expires: int = 0
    retry_on_worker_lost: int = 0  # the older opt-in: re-run this many times when the worker is lost
    retry: RetryPolicy = NO_RETRIES
    not_before: int = 0  # a retried job waits until then (epoch ms) before it may be claimed
    attempts: tuple[Attempt, ...] = ()  # the ended attempts, oldest first

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def retries_after(self, failure: Failure) -> bool:
        """True when this attempt, ending with ``failure``, is followed by another one."""
        if failure.reason == FailureReason.WORKER_LOST and self.attempt <= self.retry_on_worker_lost:
            return True
        return self.retry.applies(failure.reason, self.attempt)

    def ended_attempt(
        self, status: JobStatus, failure: Failure | None, now: int, *, retried: bool
    ) -> Attempt:
        """The history entry of the running attempt ending now."""
        return Attempt(self.attempt, self.start_time, now, self.worker_id, status, failure, retried)


INPUT = "input"
OUTPUT = "output"


def retry_or_end(
    job: Job, status: JobStatus, failure: Failure | None, now: int, *, may_retry: bool = True
) -> tuple[JobStatus, JobUpdate]:
    """How the running attempt of ``job`` ends: the status to write and what else to set. A failure the
    job's policy retries puts it back to SUBMITTED, to be claimed again (attempt + 1) after its backoff;
    anything else is the end. Either way the attempt joins the job's history. ``may_retry=False``: the
    end as it is (the retry's write found the job cancelled meanwhile; CANCELLING never goes back)."""
    retried = may_retry and status == JobStatus.FAILED and failure is not None and job.retries_after(failure)
    history = (*job.attempts, job.ended_attempt(status, failure, now, retried=retried))
    if retried:
        assert failure is not None
        wait = job.retry.delay_ms(job.attempt)
        message = f"Attempt {job.attempt} failed ({failure.reason}); retrying"
        if wait:
            message += f" in {wait / 1000:g} s"
        return JobStatus.SUBMITTED, JobUpdate(
            worker_id="", lease_expires=0, not_before=now + wait, attempts=history, progress_message=message
        )
    return status, JobUpdate(failure=failure, attempts=history)


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
    not_before: int | None = None
    attempts: tuple[Attempt, ...] | None = None
    live: LiveProgress | None = None  # the attempt's last live view, written with the transition


@dataclass(frozen=True)
class JobFilter:
    """Narrowing of a job listing beyond owner and status (the app's filters). None: any."""

    types: frozenset[JobType] | None = None
    runtime_name: str | None = None  # compared case-insensitively
    created_from: int | None = None  # epoch ms, inclusive
    created_to: int | None = None  # epoch ms, exclusive

    def admits(self, job: Job) -> bool:
        return (
            (self.types is None or job.type in self.types)
            and (self.runtime_name is None or job.runtime.name.lower() == self.runtime_name.lower())
            and (self.created_from is None or job.date_created >= self.created_from)
            and (self.created_to is None or job.date_created < self.created_to)
        )


NO_FILTER = JobFilter()


@dataclass(frozen=True)
class Waiting:
    """A SUBMITTED job as the dispatcher sees it."""

    job_id: str
    attempt: int  # the attempt already made; the next claim makes attempt + 1
    runtime_id: str
    dispatched_at: int  # 0: never published
