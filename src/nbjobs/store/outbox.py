"""The dispatch outbox: when each SUBMITTED job was last published to the broker.

The job row is the record; the broker only carries a hint. Publishing happens after the row is
committed, and the reconciler re-publishes from here what a broker lost or never got.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, func, select, update

from nbjobs.models.jobs import JobStatus, Waiting
from nbjobs.store.tables import jobs

_SUBMITTED = str(JobStatus.SUBMITTED)


class SqlOutbox:
    """Reads and marks the dispatch state of SUBMITTED jobs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def mark_dispatched(self, job_ids: Iterable[str], now: int) -> None:
        ids = list(job_ids)
        if not ids:
            return
        stmt = (
            update(jobs).where(jobs.c.job_id.in_(ids), jobs.c.status == _SUBMITTED).values(dispatched_at=now)
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def due(
        self, *, created_before: int, dispatched_before: int, now: int, limit: int = 500
    ) -> list[Waiting]:
        """SUBMITTED jobs that may run at ``now`` (a retry's backoff is over) and were never published
        (and are older than ``created_before``), or last published before ``dispatched_before``, or are
        retries not published since their backoff ended; oldest publish first."""
        never = (jobs.c.dispatched_at == 0) & (jobs.c.revision < created_before)
        stale = (jobs.c.dispatched_at > 0) & (jobs.c.dispatched_at < dispatched_before)
        retry = (jobs.c.not_before > 0) & (jobs.c.dispatched_at < jobs.c.not_before)
        stmt = (
            select(jobs.c.job_id, jobs.c.attempt, jobs.c.runtime_id, jobs.c.dispatched_at)
            .where(jobs.c.status == _SUBMITTED, jobs.c.not_before <= now, never | stale | retry)
            .order_by(jobs.c.dispatched_at, jobs.c.date_created)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [Waiting(*row) for row in conn.execute(stmt)]

    def waiting_counts(self) -> dict[str, int]:
        """How many SUBMITTED jobs wait per runtime id."""
        stmt = (
            select(jobs.c.runtime_id, func.count())
            .where(jobs.c.status == _SUBMITTED)
            .group_by(jobs.c.runtime_id)
        )
        with self.engine.connect() as conn:
            return {runtime_id: int(n) for runtime_id, n in conn.execute(stmt)}
