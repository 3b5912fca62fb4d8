"""The machines view: which workers are alive, what they serve and how busy they are (admins only)."""

from __future__ import annotations

from dataclasses import dataclass

from nbjobs.clock import Clock
from nbjobs.errors import PermissionDenied
from nbjobs.models.accounts import User
from nbjobs.models.stores import JobStore
from nbjobs.models.workers import WorkerRecord
from nbjobs.store.workers import SqlWorkerStore


@dataclass(frozen=True)
class Machine:
    """A live worker process and the jobs it is running now."""

    worker: WorkerRecord
    running_jobs: tuple[str, ...]


def list_machines(
    user: User, workers: SqlWorkerStore, store: JobStore, clock: Clock, lease_ms: int
) -> list[Machine]:
    """Workers that renewed their heartbeat within one lease, with their running job ids.
    PermissionDenied for anyone but an administrator."""
    if not user.is_admin:
        raise PermissionDenied("Only administrators can see the machines.")
    return [
        Machine(w, tuple(j.job_id for j in store.running_on(w.worker_id + "/")))
        for w in workers.live(clock() - lease_ms)
    ]
