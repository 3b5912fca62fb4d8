"""In-memory usage view (tests); mirrors store/usage.py over a MemoryJobStore."""

from __future__ import annotations

from nbjobs.models.usage import JobUsage
from nbjobs.store.memory.jobs import MemoryJobStore
from nbjobs.store.usage import MAX_ROWS


class MemoryUsageStore:
    def __init__(self, jobs: MemoryJobStore) -> None:
        self.jobs = jobs

    def usage(self, since: int, limit: int = MAX_ROWS) -> list[JobUsage]:
        found = [
            JobUsage(
                j.username,
                j.runtime.runtime_id,
                j.runtime.name,
                j.status,
                j.start_time,
                j.end_time,
                float(j.results.get("cpuSeconds", 0) or 0),
            )
            for j in self.jobs.list(limit=10**9)
            if not j.ended or j.end_time >= since
        ]
        return found[:limit]
