"""Workers: the registry rows of `nbjobs worker` processes (the machines view)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerRecord:
    """A worker process as it last reported itself."""

    worker_id: str  # also the prefix of every job.worker_id it claims
    hostname: str
    pid: int
    runtimes: tuple[dict[str, str], ...]  # ({"id": …, "name": …}, …)
    queues: tuple[str, ...]
    concurrency: int
    state: str  # online | draining
    version: str
    started: int
    last_heartbeat: int
