"""The supervisor: owns one claimed job from EXECUTING to its end.

It starts the runner in its own process group, relays progress to the store, renews the lease,
watches for cancel and the deadline, and then stops the run in stages (``stopping.py``: interrupt →
grace → SIGTERM → SIGKILL of the kernel's whole process tree). It is the single writer of the job's
final status (decided by ``verdict.py``), and every write it makes is fenced by the attempt it claimed.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable

from nbjobs.clock import Clock
from nbjobs.execution.contract import CredentialIssuer, RuntimeLookup
from nbjobs.execution.job_run import JobRun, log_end
from nbjobs.execution.limits import LimitBackend, RlimitBackend
from nbjobs.execution.warm_pool import WarmPool
from nbjobs.models.events import NO_EVENTS, JobEvents, PoolState
from nbjobs.models.jobs import (
    Job,
)
from nbjobs.models.runtimes import RuntimeSpec
from nbjobs.models.stores import JobStore
from nbjobs.settings import Settings
from nbjobs.telemetry.logs import job_context

log = logging.getLogger(__name__)


class Supervisor:
    """Runs claimed jobs to completion, one job per calling thread, each in a runner from a warm pool.

    ``runtimes`` resolves a job's runtime to its limits (unknown: no limits beyond the server's);
    ``limits`` is how this machine enforces them; ``credentials`` issues the per-job token.
    """

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        clock: Clock,
        *,
        runtimes: RuntimeLookup | None = None,
        limits: LimitBackend | None = None,
        credentials: CredentialIssuer | None = None,
        max_minutes: Callable[[], float] | None = None,
        events: JobEvents = NO_EVENTS,
    ) -> None:
        self.store = store
        self.events = events  # told of each job started, its kernel's start, and each end it wrote
        self.settings = settings
        self.clock = clock
        self.runtimes = runtimes or (lambda runtime_id: None)
        self.limits = limits or RlimitBackend()
        self.credentials = credentials
        # maxExecuteNotebookTimeMinutes as configured now (notebooks/configuration/update may change it)
        self.max_minutes = max_minutes or (lambda: settings.execution.max_execute_notebook_time_minutes)
        self._pools: dict[str, WarmPool] = {}
        self._pools_lock = threading.Lock()
        self._running: dict[str, JobRun] = {}  # job id -> its run, for wake()
        self._started = False
        self.pool = self.pool_for(settings.execution.default_kernel_name)

    def pool_for(self, kernel_name: str) -> WarmPool:
        """The warm pool of one kernel (one per runtime), created on first use."""
        with self._pools_lock:
            pool = self._pools.get(kernel_name)
            if pool is None:
                pool = self._pools[kernel_name] = WarmPool(self.settings, kernel_name)
                if self._started:
                    pool.start()
            return pool

    def prepare(self, kernel_name: str) -> None:
        """Keep kernels of ``kernel_name`` warm from now on (a worker's runtimes)."""
        self.pool_for(kernel_name)

    def start(self) -> None:
        """Keep every pool filled in the background."""
        with self._pools_lock:
            self._started = True
            pools = list(self._pools.values())
        for pool in pools:
            pool.start()

    def fill(self) -> None:
        """Fill every pool now, in the calling thread (burst mode)."""
        with self._pools_lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.fill()

    def pool_states(self) -> list[PoolState]:
        """Every warm pool's ready kernels and takes (read by the metrics at scrape time)."""
        with self._pools_lock:
            pools = list(self._pools.values())
        return [pool.state() for pool in pools]

    def wake(self, job_id: str) -> None:
        """Something changed for ``job_id`` (a cancel): look at its row now, not at the next poll."""
        run = self._running.get(job_id)
        if run is not None:
            run.check_now = True

    def close(self) -> None:
        """Stop the pools' waiting runners and their kernels."""
        with self._pools_lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()

    def spec_of(self, job: Job) -> RuntimeSpec:
        """The job's runtime as registered now, or a limit-free spec from what the job recorded."""
        found = self.runtimes(job.runtime.runtime_id)
        if found is not None:
            return found
        rt = job.runtime
        return RuntimeSpec(rt.runtime_id, rt.name, rt.version, rt.kernel_name)

    def run(self, job: Job) -> Job | None:
        """Execute a job this worker has claimed; returns the ended job, or None if fenced out. Every
        line logged meanwhile carries the job's id, owner and runtime; a FAILED end is a WARNING."""
        with job_context(job.job_id, job.username, job.runtime.runtime_id):
            ended = self._run(job)
            log_end(job, ended)
            return ended

    def _run(self, job: Job) -> Job | None:
        workdir = self.settings.store.data_dir / "jobs" / f"{job.job_id}-{job.attempt}"
        spec = self.spec_of(job)
        pool = self.pool_for(spec.kernel_name)
        try:
            run = JobRun(self, job, spec, pool, workdir)
            self._running[job.job_id] = run
            self.events.started(job)
            try:
                return run.run()
            finally:
                self._running.pop(job.job_id, None)
        finally:
            pool.release()
            if not self.settings.execution.keep_job_dirs:
                shutil.rmtree(workdir, ignore_errors=True)
