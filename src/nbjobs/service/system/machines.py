"""The machines view: which workers are alive, what they serve and how busy they are (admins only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nbjobs.clock import Clock
from nbjobs.models.accounts import User
from nbjobs.models.stores import JobStore, WorkerStore
from nbjobs.models.workers import WorkerRecord
from nbjobs.service.authz import MACHINES, require_admin


@dataclass(frozen=True)
class Machine:
    """A live worker process and the jobs it is running now. ``local``: this server's own pool (the
    embedded mode, no broker), which has no row in the worker registry."""

    worker: WorkerRecord
    running_jobs: tuple[str, ...]
    local: bool = False


def list_machines(
    user: User, workers: WorkerStore, store: JobStore, clock: Clock, lease_ms: int
) -> list[Machine]:
    """Workers that renewed their heartbeat within one lease, with their running job ids.
    PermissionDenied for anyone but an administrator."""
    require_admin(user, MACHINES)
    return [
        Machine(w, tuple(j.job_id for j in store.running_on(w.worker_id + "/")))
        for w in workers.live(clock() - lease_ms)
    ]


class MachineService:
    """The machines view over the worker registry and the job table; ``local`` describes this
    process's own job pool when it runs jobs itself (the embedded mode), as of now."""

    def __init__(
        self,
        workers: WorkerStore,
        jobs: JobStore,
        clock: Clock,
        *,
        lease_ms: int,
        local: Callable[[], WorkerRecord] | None = None,
    ) -> None:
        self.workers = workers
        self.jobs = jobs
        self.clock = clock
        self.lease_ms = lease_ms
        self.local = local

    def list(self, caller: User) -> list[Machine]:
        """Live workers with their running jobs, for an administrator; this server's own pool first
        in the embedded mode."""
        found = list_machines(caller, self.workers, self.jobs, self.clock, self.lease_ms)
        if self.local is None:
            return found
        here = self.local()
        running = tuple(j.job_id for j in self.jobs.running_on(here.worker_id + "/"))
        return [Machine(here, running, local=True), *found]
