"""The SQL job store: jobs and their notebook blobs, every status write a fenced compare-and-set."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import ColumnElement, Engine, Update, delete, func, insert, literal, select, update

from nbjobs.models.events import JobCount
from nbjobs.models.jobs import (
    ENDED,
    NO_FILTER,
    NO_RETRIES,
    RUNNING,
    Attempt,
    Failure,
    Job,
    JobFilter,
    JobInputs,
    JobStatus,
    JobType,
    JobUpdate,
    RetryPolicy,
    sources_of,
)
from nbjobs.models.live import JobChange, LiveProgress
from nbjobs.models.runtimes import Runtime
from nbjobs.store.job_live import read_changes, read_live, write_live
from nbjobs.store.tables import job_blobs, job_live, jobs

NOT_ENDED = frozenset(JobStatus) - ENDED


def job_from_row(row: Any) -> Job:
    m = row._mapping
    return Job(
        job_id=m["job_id"],
        type=JobType(m["type"]),
        username=m["username"],
        status=JobStatus(m["status"]),
        inputs=JobInputs.from_wire(m["inputs"]),
        runtime=Runtime(m["runtime_id"], m["runtime_name"], m["runtime_version"], m["kernel_name"]),
        date_created=m["date_created"],
        revision=m["revision"],
        start_time=m["start_time"],
        end_time=m["end_time"],
        attempt=m["attempt"],
        failure=Failure.from_wire(m["failure"]) if m["failure"] else None,
        results=m["results"] or {},
        progress_message=m["progress_message"],
        progress_percent=m["progress_percent"],
        cancel_requested=bool(m["cancel_requested"]),
        worker_id=m["worker_id"],
        lease_expires=m["lease_expires"],
        retry_on_worker_lost=m["retry_on_worker_lost"],
        retry=RetryPolicy.from_wire(m["retry_policy"]),
        not_before=m["not_before"],
        attempts=tuple(Attempt.from_wire(a) for a in m["attempts"] or ()),
    )


def job_to_row(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "type": str(job.type),
        "username": job.username,
        "status": str(job.status),
        "inputs": job.inputs.to_wire(),
        "results": job.results,
        "failure": job.failure.to_wire() if job.failure else None,
        "runtime_id": job.runtime.runtime_id,
        "runtime_name": job.runtime.name,
        "runtime_version": job.runtime.version,
        "kernel_name": job.runtime.kernel_name,
        "date_created": job.date_created,
        "revision": job.revision,
        "start_time": job.start_time,
        "end_time": job.end_time,
        "attempt": job.attempt,
        "retry_on_worker_lost": job.retry_on_worker_lost,
        "retry_policy": job.retry.to_wire() if job.retry != NO_RETRIES else None,
        "not_before": job.not_before,
        "attempts": [a.to_wire() for a in job.attempts] or None,
        "progress_message": job.progress_message,
        "progress_percent": job.progress_percent,
        "cancel_requested": job.cancel_requested,
        "worker_id": job.worker_id,
        "lease_expires": job.lease_expires,
        "runner_pid": 0,
        "kernel_pid": 0,
    }


def _update_values(update_: JobUpdate | None) -> dict[str, Any]:
    if update_ is None:
        return {}
    values: dict[str, Any] = {}
    for name in (
        "results",
        "progress_message",
        "progress_percent",
        "start_time",
        "end_time",
        "cancel_requested",
        "worker_id",
        "lease_expires",
        "attempt",
        "not_before",
    ):
        value = getattr(update_, name)
        if value is not None:
            values[name] = value
    if update_.failure is not None:
        values["failure"] = update_.failure.to_wire()
    if update_.attempts is not None:
        values["attempts"] = [a.to_wire() for a in update_.attempts]
    return values


class SqlJobStore:
    """JobStore over SQLAlchemy Core. Each method is one short transaction; writes are single CAS
    statements, so SQLite never has to upgrade a read lock and PostgreSQL never blocks a reader."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def close(self) -> None:
        self.engine.dispose()

    # -- writes -------------------------------------------------------------------------------------
    def create(self, job: Job, notebook: bytes, *, max_active: int = 0) -> bool:
        row = job_to_row(job)
        stmt: Any = insert(jobs).values(**row)
        if max_active > 0:
            # One conditional INSERT … SELECT: the count and the insert are one statement, atomic under
            # SQLite's single writer; PostgreSQL serialises one user's submits with an advisory lock.
            active = (
                select(func.count())
                .select_from(jobs)
                # `IN (not ended)`, not `NOT IN (ended)`: index seeks that never visit the user's ended jobs
                .where(jobs.c.username == job.username, jobs.c.status.in_([str(s) for s in NOT_ENDED]))
                .scalar_subquery()
            )
            values = select(*(literal(v, type_=jobs.c[k].type) for k, v in row.items())).where(
                active < max_active
            )
            stmt = insert(jobs).from_select(list(row), values)
        with self.engine.begin() as conn:
            if max_active > 0 and conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("nbjobs-user:" + job.username))))
            if conn.execute(stmt.returning(jobs.c.job_id)).first() is None:
                return False  # nothing inserted: the owner has max_active jobs not ended
            conn.execute(
                insert(job_blobs).values(job_id=job.job_id, kind="input", data=notebook, updated=job.revision)
            )
        return True

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
        sources = sources_of(target) if expected is None else sources_of(target) & expected
        if not sources:
            return None
        values = {"status": str(target), "revision": now, **_update_values(update)}
        if target in ENDED:
            values.setdefault("end_time", now)
            values["lease_expires"] = 0
        stmt = _cas(job_id, sources, attempt).values(**values).returning(*jobs.c)
        with self.engine.begin() as conn:
            row = conn.execute(stmt).first()
            if row is not None and update is not None and update.live is not None:
                write_live(conn, job_id, update.live, now)
        return job_from_row(row) if row else None

    def claim_next(self, worker_id: str, now: int, lease_ms: int, *, per_user_cap: int = 0) -> Job | None:
        waiting = jobs.alias("waiting")
        running = jobs.alias("running")
        candidate = select(waiting.c.job_id).where(
            waiting.c.status == str(JobStatus.SUBMITTED), waiting.c.not_before <= now
        )
        if per_user_cap > 0:
            busy = (
                select(func.count())
                .select_from(running)
                .where(
                    running.c.username == waiting.c.username,
                    running.c.status.in_([str(s) for s in RUNNING]),
                )
                .scalar_subquery()
            )
            candidate = candidate.where(busy < per_user_cap)
        picked = (
            candidate.order_by(waiting.c.date_created, waiting.c.job_id)
            .limit(1)
            .with_for_update(skip_locked=True, of=waiting)
            .scalar_subquery()
        )
        stmt = (
            update(jobs)
            .where(jobs.c.job_id == picked, jobs.c.status == str(JobStatus.SUBMITTED))
            .values(**_claim_values(worker_id, now, lease_ms), attempt=jobs.c.attempt + 1)
            .returning(*jobs.c)
        )
        with self.engine.begin() as conn:
            row = conn.execute(stmt).first()
        return job_from_row(row) if row else None

    def claim(
        self, job_id: str, attempt: int, worker_id: str, now: int, lease_ms: int, *, per_user_cap: int = 0
    ) -> Job | None:
        stmt = update(jobs).where(
            jobs.c.job_id == job_id,
            jobs.c.status == str(JobStatus.SUBMITTED),
            jobs.c.attempt == attempt - 1,
            jobs.c.not_before <= now,  # a retry waiting for its backoff: the reconciler sends it again
        )
        if per_user_cap > 0:
            running = jobs.alias("running")
            busy = (
                select(func.count())
                .select_from(running)
                .where(running.c.username == jobs.c.username, running.c.status.in_([str(s) for s in RUNNING]))
                .scalar_subquery()
            )
            stmt = stmt.where(busy < per_user_cap)
        stmt = stmt.values(**_claim_values(worker_id, now, lease_ms), attempt=attempt).returning(*jobs.c)
        with self.engine.begin() as conn:
            row = conn.execute(stmt).first()
        return job_from_row(row) if row else None

    def heartbeat(self, job_id: str, attempt: int, now: int, lease_ms: int) -> Job | None:
        stmt = _cas(job_id, RUNNING, attempt).values(lease_expires=now + lease_ms).returning(*jobs.c)
        with self.engine.begin() as conn:
            row = conn.execute(stmt).first()
        return job_from_row(row) if row else None

    def set_progress(
        self,
        job_id: str,
        attempt: int,
        now: int,
        percent: int,
        message: str,
        live: LiveProgress | None = None,
    ) -> bool:
        stmt = _cas(job_id, RUNNING, attempt).values(
            progress_percent=percent, progress_message=message, revision=now
        )
        with self.engine.begin() as conn:
            if conn.execute(stmt).rowcount != 1:
                return False
            if live is not None:
                write_live(conn, job_id, live, now)
            return True

    def live(self, job_id: str) -> LiveProgress | None:
        with self.engine.connect() as conn:
            return read_live(conn, job_id)

    def changes(
        self, since: int, *, username: str | None = None, limit: int = 500
    ) -> builtins.list[JobChange]:
        with self.engine.connect() as conn:
            return read_changes(conn, since, username, limit)

    def set_processes(self, job_id: str, attempt: int, runner_pid: int, kernel_pid: int) -> bool:
        stmt = _cas(job_id, RUNNING, attempt).values(runner_pid=runner_pid, kernel_pid=kernel_pid)
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def processes(self, job_id: str) -> tuple[int, int]:
        """(runner_pid, kernel_pid) last recorded for the job; zeros when unknown."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(jobs.c.runner_pid, jobs.c.kernel_pid).where(jobs.c.job_id == job_id)
            ).first()
        return (row[0], row[1]) if row else (0, 0)

    def put_blob(self, job_id: str, kind: str, data: bytes, now: int, *, attempt: int | None = None) -> bool:
        with self.engine.begin() as conn:
            if attempt is not None:
                owner = conn.execute(
                    select(jobs.c.attempt).where(jobs.c.job_id == job_id, jobs.c.attempt == attempt)
                ).first()
                if owner is None:
                    return False
            changed = conn.execute(
                update(job_blobs)
                .where(job_blobs.c.job_id == job_id, job_blobs.c.kind == kind)
                .values(data=data, updated=now)
            ).rowcount
            if not changed:
                conn.execute(insert(job_blobs).values(job_id=job_id, kind=kind, data=data, updated=now))
        return True

    def delete_ended(self, *, ended_before: int | None = None, username: str | None = None) -> int:
        cond: builtins.list[ColumnElement[bool]] = [jobs.c.status.in_([str(s) for s in ENDED])]
        if ended_before is not None:
            cond.append(jobs.c.end_time < ended_before)
        if username is not None:
            cond.append(jobs.c.username == username)
        doomed = select(jobs.c.job_id).where(*cond)
        with self.engine.begin() as conn:
            # Blobs first: SQLite enforces ON DELETE CASCADE only with foreign_keys=ON, so don't rely on it.
            conn.execute(delete(job_blobs).where(job_blobs.c.job_id.in_(doomed)))
            conn.execute(delete(job_live).where(job_live.c.job_id.in_(doomed)))
            return conn.execute(delete(jobs).where(*cond)).rowcount

    # -- reads --------------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).first()
        return job_from_row(row) if row else None

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
        order = (
            (jobs.c.date_created.desc(), jobs.c.job_id.desc())
            if newest_first
            else (jobs.c.date_created, jobs.c.job_id)
        )
        cond = _filters(username, statuses, where)
        stmt = select(jobs).where(*cond).order_by(*order).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [job_from_row(r) for r in conn.execute(stmt)]

    def count(
        self,
        *,
        username: str | None = None,
        statuses: frozenset[JobStatus] | None = None,
        where: JobFilter = NO_FILTER,
    ) -> int:
        stmt = select(func.count()).select_from(jobs).where(*_filters(username, statuses, where))
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def active_counts(self) -> builtins.list[JobCount]:
        # `status IN (not ended)`: a seek on ix_jobs_status_created that never visits ended jobs
        stmt = (
            select(jobs.c.type, jobs.c.status, jobs.c.runtime_name, func.count())
            .where(jobs.c.status.in_([str(s) for s in NOT_ENDED]))
            .group_by(jobs.c.type, jobs.c.status, jobs.c.runtime_name)
        )
        with self.engine.connect() as conn:
            return [JobCount(JobType(t), JobStatus(s), name, int(n)) for t, s, name, n in conn.execute(stmt)]

    def expired(self, now: int) -> builtins.list[Job]:
        stmt = select(jobs).where(jobs.c.status.in_([str(s) for s in RUNNING]), jobs.c.lease_expires < now)
        with self.engine.connect() as conn:
            return [job_from_row(r) for r in conn.execute(stmt)]

    def running_on(self, worker_prefix: str) -> builtins.list[Job]:
        # Not LIKE (startswith): "_" and "%" in a host name would be wildcards; SQLite's LIKE ignores case.
        prefix = func.substr(jobs.c.worker_id, 1, len(worker_prefix)) == worker_prefix
        stmt = select(jobs).where(jobs.c.status.in_([str(s) for s in RUNNING]), prefix)
        with self.engine.connect() as conn:
            return [job_from_row(r) for r in conn.execute(stmt)]

    def get_blob(self, job_id: str, kind: str) -> bytes | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(job_blobs.c.data).where(job_blobs.c.job_id == job_id, job_blobs.c.kind == kind)
            ).first()
        return bytes(row[0]) if row else None


def _cas(job_id: str, sources: frozenset[JobStatus], attempt: int | None) -> Update:
    stmt = update(jobs).where(jobs.c.job_id == job_id, jobs.c.status.in_([str(s) for s in sources]))
    if attempt is not None:
        stmt = stmt.where(jobs.c.attempt == attempt)
    return stmt


def _claim_values(worker_id: str, now: int, lease_ms: int) -> dict[str, Any]:
    return {
        "status": str(JobStatus.EXECUTING),
        "worker_id": worker_id,
        "lease_expires": now + lease_ms,
        "start_time": now,
        "revision": now,
        "progress_message": "Starting kernel",
        "progress_percent": 0,
        "runner_pid": 0,
        "kernel_pid": 0,
    }


def _filters(
    username: str | None, statuses: frozenset[JobStatus] | None, where: JobFilter = NO_FILTER
) -> list[Any]:
    cond: list[Any] = []
    if username is not None:
        cond.append(jobs.c.username == username)
    if statuses is not None:
        cond.append(jobs.c.status.in_([str(s) for s in statuses]))
    if where.types is not None:
        cond.append(jobs.c.type.in_([str(t) for t in where.types]))
    if where.runtime_name is not None:
        cond.append(func.lower(jobs.c.runtime_name) == where.runtime_name.lower())
    if where.created_from is not None:
        cond.append(jobs.c.date_created >= where.created_from)
    if where.created_to is not None:
        cond.append(jobs.c.date_created < where.created_to)
    return cond
