"""Usage statistics (``<admin>/system/statistics/mostRecent``): jobs, wall and CPU time per user and
runtime over a recent window, for administrators."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nbjobs.clock import Clock
from nbjobs.errors import InvalidRequest
from nbjobs.models.accounts import User
from nbjobs.models.jobs import JobStatus
from nbjobs.models.stores import UsageStore
from nbjobs.models.usage import JobUsage
from nbjobs.service.authz import STATISTICS, require_admin

DEFAULT_WINDOW_MINUTES = 60
MAX_WINDOW_MINUTES = 31 * 24 * 60
_COUNTED = {
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
    JobStatus.EXECUTING: "running",
    JobStatus.CANCELLING: "running",
    JobStatus.SUBMITTED: "waiting",
}


@dataclass
class Tally:
    """Jobs and the time they used, for one user, one runtime or all."""

    jobs: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTED.values(), 0))
    wall_ms: int = 0
    cpu_seconds: float = 0.0

    def add(self, job: JobUsage, now: int) -> None:
        self.jobs += 1
        self.counts[_COUNTED[job.status]] += 1
        if job.start_time:
            self.wall_ms += max((job.end_time or now) - job.start_time, 0)
        self.cpu_seconds += job.cpu_seconds

    def to_wire(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            **self.counts,
            "wallSeconds": round(self.wall_ms / 1000, 3),
            "cpuSeconds": round(self.cpu_seconds, 3),
        }


class StatisticsService:
    def __init__(self, store: UsageStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def most_recent(self, caller: User, window_minutes: int | None = None) -> dict[str, Any]:
        """Jobs that ended in the last ``window_minutes`` (default 60) or have not ended, summed in all,
        per user and per runtime (the running jobs' wall time counts up to now)."""
        require_admin(caller, STATISTICS)
        minutes = DEFAULT_WINDOW_MINUTES if window_minutes is None else window_minutes
        if not 1 <= minutes <= MAX_WINDOW_MINUTES:
            raise InvalidRequest(f"windowMinutes must be from 1 to {MAX_WINDOW_MINUTES} (31 days).")
        now = self.clock()
        since = now - minutes * 60_000
        return summarize(self.store.usage(since), since=since, now=now, minutes=minutes)


def summarize(usage: Iterable[JobUsage], *, since: int, now: int, minutes: int) -> dict[str, Any]:
    total = Tally()
    users: dict[str, Tally] = {}
    runtimes: dict[tuple[str, str], Tally] = {}
    for job in usage:
        total.add(job, now)
        users.setdefault(job.username, Tally()).add(job, now)
        runtimes.setdefault((job.runtime_id, job.runtime_name), Tally()).add(job, now)
    return {
        "startTime": since,
        "endTime": now,
        "windowMinutes": minutes,
        "total": total.to_wire(),
        "users": [{"username": name, **t.to_wire()} for name, t in sorted(users.items())],
        "runtimes": [
            {"runtimeId": rid, "runtimeName": name, **t.to_wire()}
            for (rid, name), t in sorted(runtimes.items(), key=lambda kv: kv[0][1].lower())
        ],
    }
