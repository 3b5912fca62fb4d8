"""The SQL side of live progress: the ``job_live`` row of a job and the change feed's query. Used by
``SqlJobStore`` inside its own transactions, so a job's progress and its live view change together."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from nbjobs.models.live import JobChange, LiveProgress
from nbjobs.store.tables import job_live, jobs


def write_live(conn: Connection, job_id: str, live: LiveProgress, now: int) -> None:
    """Replace the job's live row (one writer per attempt: the job's own row is locked by the caller's
    UPDATE in the same transaction, so two attempts never race here)."""
    values = {"attempt": live.attempt, "data": live.to_store(), "updated": now}
    if not conn.execute(update(job_live).where(job_live.c.job_id == job_id).values(**values)).rowcount:
        conn.execute(insert(job_live).values(job_id=job_id, **values))


def read_live(conn: Connection, job_id: str) -> LiveProgress | None:
    row = conn.execute(select(job_live.c.data).where(job_live.c.job_id == job_id)).first()
    return LiveProgress.from_store(row[0]) if row else None


CHANGE_COLUMNS = (
    jobs.c.job_id,
    jobs.c.username,
    jobs.c.type,
    jobs.c.status,
    jobs.c.runtime_name,
    jobs.c.date_created,
    jobs.c.revision,
    jobs.c.progress_percent,
    jobs.c.progress_message,
)


def read_changes(conn: Connection, since: int, username: str | None, limit: int) -> list[JobChange]:
    """Jobs whose revision is after ``since``, oldest change first (a seek on ix_jobs_revision)."""
    stmt: Any = select(*CHANGE_COLUMNS).where(jobs.c.revision > since)
    if username is not None:
        stmt = stmt.where(jobs.c.username == username)
    stmt = stmt.order_by(jobs.c.revision, jobs.c.job_id).limit(limit)
    return [JobChange(*row) for row in conn.execute(stmt)]
