"""Submitting, reading, cancelling and cleaning up jobs, with the ArcGIS visibility rules."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import replace

from nbjobs.clock import Clock
from nbjobs.errors import (
    CannotCancel,
    InvalidParameters,
    InvalidRequest,
    JobLimitReached,
    JobNotFound,
    PayloadTooLarge,
)
from nbjobs.models.accounts import Principal
from nbjobs.models.events import NO_EVENTS, JobEvents
from nbjobs.models.jobs import (
    ENDED,
    NO_FILTER,
    NO_RETRIES,
    OUTPUT,
    Failure,
    FailureReason,
    Job,
    JobFilter,
    JobInputs,
    JobStatus,
    JobType,
    JobUpdate,
    RetryPolicy,
    new_job_id,
)
from nbjobs.models.live import JobChange, LiveProgress
from nbjobs.models.parameters import NotebookParameters
from nbjobs.models.runtimes import DEFAULT_RUNTIME, Runtime
from nbjobs.models.stores import JobStore
from nbjobs.service.authz import may_see, owner_scope
from nbjobs.settings import Settings

HOUR_MS = 3_600_000


class JobService:
    """Every job operation a caller can ask for. Others' jobs answer exactly like unknown ones."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        clock: Clock,
        *,
        on_submit: Callable[[Job], None] | None = None,
        on_cancel: Callable[[Job], None] | None = None,
        clean_age_hours: Callable[[], int] | None = None,
        events: JobEvents = NO_EVENTS,
    ) -> None:
        self.store = store
        self.events = events  # told of each job submitted, and of each SUBMITTED job a cancel ended
        self.settings = settings
        self.clock = clock
        self._on_submit = on_submit or (lambda job: None)
        self._on_cancel = on_cancel or (lambda job: None)
        self._clean_age_hours = clean_age_hours or (lambda: settings.housekeeping.async_jobs_clean_age_hours)

    def submit(
        self,
        who: Principal,
        notebook: bytes,
        *,
        inputs: JobInputs | None = None,
        parameters: NotebookParameters | None = None,
        job_type: JobType = JobType.EXECUTE_NOTEBOOK,
        runtime: Runtime | None = None,
        retry_on_worker_lost: int = 0,
        retry: RetryPolicy = NO_RETRIES,
    ) -> Job:
        """Store a new SUBMITTED job; the notebook itself is checked when it runs, the parameters' limits
        now (``parameters``, parsed by the caller, replaces ``inputs.notebook_parameters``)."""
        inputs = inputs or JobInputs()
        if parameters is not None:
            inputs = replace(inputs, notebook_parameters=parameters)
        check_parameter_limits(
            inputs.notebook_parameters,
            max_count=self.settings.limits.max_parameters,
            max_bytes=self.settings.limits.max_parameter_bytes,
        )
        if inputs.execution_timeout_minutes is not None and inputs.execution_timeout_minutes < 0:
            raise InvalidRequest("executionTimeoutInMinutes must be 0 or a positive number of minutes")
        if retry_on_worker_lost < 0:
            raise InvalidRequest("retry_on_worker_lost must be 0 or more")
        now = self.clock()
        job = Job(
            job_id=new_job_id(),
            type=job_type,
            username=who.username,
            status=JobStatus.SUBMITTED,
            inputs=inputs,
            runtime=runtime or DEFAULT_RUNTIME,
            date_created=now,
            revision=now,
            retry_on_worker_lost=retry_on_worker_lost,
            retry=retry,
        )
        cap = self.settings.limits.max_queued_jobs_per_user
        if not self.store.create(job, notebook, max_active=cap):
            raise JobLimitReached(
                f"Too many jobs: '{who.username}' already has {cap} jobs waiting or running, the most this "
                "server accepts (NBJOBS_MAX_QUEUED_JOBS_PER_USER). Submit again when some have ended."
            )
        self.events.submitted(job)
        self._on_submit(job)
        return job

    def get(self, who: Principal, job_id: str) -> Job:
        """The job if ``who`` may see it, else JobNotFound (whether or not it exists)."""
        job = self.store.get(job_id)
        if job is None or not may_see(who, job.username):
            raise JobNotFound(job_id)
        return job

    def list(
        self,
        who: Principal,
        *,
        statuses: frozenset[JobStatus] | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
        where: JobFilter = NO_FILTER,
        username: str | None = None,
    ) -> tuple[list[Job], int]:
        """The jobs ``who`` may see (admins: all, or ``username``'s; others: their own, whatever
        ``username`` says) and their total count."""
        owner = owner_scope(who)
        if owner is None and username:
            owner = username
        jobs = self.store.list(
            username=owner,
            statuses=statuses,
            limit=limit,
            offset=offset,
            newest_first=newest_first,
            where=where,
        )
        return jobs, self.store.count(username=owner, statuses=statuses, where=where)

    def live(self, who: Principal, job_id: str) -> tuple[Job, LiveProgress | None]:
        """A visible job and its live view for its current attempt (None before that attempt recorded
        one); JobNotFound as ``get``."""
        job = self.get(who, job_id)
        live = self.store.live(job_id)
        if live is not None and live.attempt != job.attempt:
            live = None  # an earlier attempt's: the retry has not started writing yet
        return job, live

    def changes(self, who: Principal, since: int, *, limit: int = 500) -> builtins.list[JobChange]:
        """Changes after ``since`` of the jobs ``who`` may see, oldest first (the job-list stream's
        resume)."""
        return self.store.changes(since, username=owner_scope(who), limit=limit)

    def output_notebook(self, who: Principal, job_id: str) -> bytes | None:
        """The executed notebook (with outputs so far) of a visible job, or None if none was produced."""
        self.get(who, job_id)
        return self.store.get_blob(job_id, OUTPUT)

    def cancel(self, who: Principal, job_id: str) -> Job:
        """Cancel a job: SUBMITTED ends at once; EXECUTING goes CANCELLING and its worker stops it."""
        self.get(who, job_id)  # visibility first: others' jobs answer as unknown ones
        now = self.clock()
        cancelled = self.store.transition(
            job_id,
            JobStatus.CANCELLED,
            now,
            expected=frozenset({JobStatus.SUBMITTED}),
            update=JobUpdate(
                cancel_requested=True, failure=Failure(FailureReason.CANCELLED, "The job was cancelled")
            ),
        )
        if cancelled is not None:
            self.events.ended(cancelled)  # a SUBMITTED job ends here; a running one ends in its supervisor
        else:
            cancelled = self.store.transition(
                job_id, JobStatus.CANCELLING, now, update=JobUpdate(cancel_requested=True)
            )
        if cancelled is None:
            current = self.store.get(job_id)
            if current is None or current.status in ENDED:
                raise CannotCancel(job_id)
            cancelled = current  # already CANCELLING: asking again is harmless
        self._on_cancel(cancelled)
        return cancelled

    def delete_all(self, who: Principal) -> int:
        """Delete the ended jobs ``who`` may see; running and waiting jobs are never touched."""
        return self.store.delete_ended(username=owner_scope(who))

    def purge_expired(self) -> int:
        """Delete jobs that ended more than asyncJobsCleanAgeHours ago."""
        age = self._clean_age_hours() * HOUR_MS
        return self.store.delete_ended(ended_before=self.clock() - age)


def check_parameter_limits(params: NotebookParameters, *, max_count: int, max_bytes: int) -> None:
    """Refuse more than ``max_count`` parameters or more than ``max_bytes`` of them as compact JSON
    (0: no limit); InvalidParameters / PayloadTooLarge name the limit."""
    if max_count and len(params) > max_count:
        raise InvalidParameters(
            f"notebookParameters has {len(params)} parameters; this server accepts at most {max_count} "
            "(NBJOBS_MAX_PARAMETERS)."
        )
    if max_bytes:
        size = params.json_size
        if size > max_bytes:
            raise PayloadTooLarge(
                f"notebookParameters is {size} bytes as JSON; this server accepts at most {max_bytes} "
                "(NBJOBS_MAX_PARAMETER_BYTES)."
            )
