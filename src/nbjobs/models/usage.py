"""Usage records: what one job used, as the statistics resource sums it per user and runtime."""

from __future__ import annotations

from dataclasses import dataclass

from nbjobs.models.jobs import JobStatus


@dataclass(frozen=True)
class JobUsage:
    """One job that ran or waited in a window: who, where, how it stands and what it used."""

    username: str
    runtime_id: str
    runtime_name: str
    status: JobStatus
    start_time: int  # 0: never started
    end_time: int  # 0: not ended
    cpu_seconds: float  # the kernel's CPU time as the runner measured it; 0 when unknown
