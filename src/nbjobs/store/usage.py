"""What jobs used, read for the statistics resource: one narrow query over the job table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, or_, select

from nbjobs.models.jobs import JobStatus
from nbjobs.models.usage import JobUsage
from nbjobs.store.jobs import NOT_ENDED
from nbjobs.store.tables import jobs

MAX_ROWS = 200_000  # a window's jobs beyond this are not counted (the answer says so)


class SqlUsageStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def usage(self, since: int, limit: int = MAX_ROWS) -> list[JobUsage]:
        """Jobs that ended at or after ``since``, and every job not ended yet."""
        not_ended = jobs.c.status.in_([str(s) for s in NOT_ENDED])
        stmt = (
            select(
                jobs.c.username,
                jobs.c.runtime_id,
                jobs.c.runtime_name,
                jobs.c.status,
                jobs.c.start_time,
                jobs.c.end_time,
                jobs.c.results,
            )
            .where(or_(not_ended, jobs.c.end_time >= since))
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_usage(row) for row in conn.execute(stmt)]


def _usage(row: Any) -> JobUsage:
    username, runtime_id, runtime_name, status, start, end, results = row
    cpu = (results or {}).get("cpuSeconds", 0)
    return JobUsage(
        username, runtime_id, runtime_name, JobStatus(status), start, end, float(cpu) if cpu else 0.0
    )
