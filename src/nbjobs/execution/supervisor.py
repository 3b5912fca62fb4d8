"""The supervisor: owns one claimed job from EXECUTING to its end.

It starts the runner in its own process group, relays progress to the store, renews the lease,
watches for cancel and the deadline, and then stops the run in stages (``stopping.py``: interrupt →
grace → SIGTERM → SIGKILL of the kernel's whole process tree). It is the single writer of the job's
final status (decided by ``verdict.py``), and every write it makes is fenced by the attempt it claimed.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable

from nbjobs.clock import Clock
from nbjobs.execution.contract import CredentialIssuer, RuntimeLookup
from nbjobs.execution.fork.runners import RunnerTemplate
from nbjobs.execution.fork.templates import StatusSink, Templates
from nbjobs.execution.job_run import JobRun, log_end
from nbjobs.execution.kernels import StartMethod
from nbjobs.execution.lab.host import LabHost
from nbjobs.execution.limits import LimitBackend, RlimitBackend
from nbjobs.execution.warm_pool import WarmPool, runner_env
from nbjobs.models.events import NO_EVENTS, JobEvents, PoolState
from nbjobs.models.jobs import RUNNING, Failure, FailureReason, Job, JobStatus, JobType, JobUpdate
from nbjobs.models.runtimes import DEFAULT_RUNTIME, RuntimeSpec
from nbjobs.models.stores import JobStore
from nbjobs.settings import Settings
from nbjobs.telemetry.logs import job_context

log = logging.getLogger(__name__)

SPEC_REFRESH_SECONDS = 10.0  # how stale a pool's idea of its runtime (preload, startMethod) may get


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
        start_status: StatusSink | None = None,
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
        # openNotebook jobs: the container host of this process (the composition root sets it)
        self.lab: LabHost | None = None
        self._started = False
        # the fork templates of this process (one per interpreter and preload); start_status: each
        # runtime's fork | spawn | fallback state as it changes (the runtime admin API shows it)
        self.templates = Templates(settings.store.data_dir / "jobs", start_status)
        # the runner template: runners forked from it (a new interpreter each when off or unavailable)
        self.runner_template: RunnerTemplate | None = None
        if settings.pool.fork_runners:
            self.runner_template = RunnerTemplate(settings.store.data_dir / "jobs", runner_env(settings))
        # kernel name -> the runtime its pool serves, and when that was read from the registry
        self._specs: dict[str, tuple[RuntimeSpec, float]] = {}
        self.pool = self.pool_for(settings.execution.default_kernel_name)

    def pool_for(self, kernel_name: str) -> WarmPool:
        """The warm pool of one kernel (one per runtime), created on first use."""
        with self._pools_lock:
            pool = self._pools.get(kernel_name)
            if pool is None:
                plan = lambda: self.start_method(kernel_name)  # noqa: E731
                launch = self.runner_template.launch if self.runner_template is not None else None
                pool = self._pools[kernel_name] = WarmPool(self.settings, kernel_name, plan, launch)
                if self._started:
                    pool.start()
            return pool

    def start_method(self, kernel_name: str) -> StartMethod:
        """How kernels of ``kernel_name`` start now: forked from its runtime's template (started or
        repaired here if need be) or spawned, as the runtime's ``startMethod`` and the server say."""
        if not self.settings.pool.fork_kernels:  # no registry lookup either: nothing to fork
            return StartMethod()
        spec = self._runtime_of(kernel_name)
        python = spec.python or sys.executable
        return self.templates.start_for(spec.runtime_id, python, spec.preload, spec.start_method)

    def _runtime_of(self, kernel_name: str) -> RuntimeSpec:
        """The runtime a pool of ``kernel_name`` serves, as registered at most SPEC_REFRESH_SECONDS ago."""
        now = time.monotonic()
        known = self._specs.get(kernel_name)
        if known is not None and now - known[1] < SPEC_REFRESH_SECONDS:
            return known[0]
        runtime_id = known[0].runtime_id if known is not None else DEFAULT_RUNTIME.runtime_id
        try:
            found = self.runtimes(runtime_id)
        except Exception as exc:  # the registry is unavailable: go on with what we knew
            log.debug("could not read runtime %s: %s", runtime_id, exc)
            found = None
        if found is None or found.kernel_name != kernel_name:  # no runtime of ours: fork, no preload
            found = known[0] if known is not None else RuntimeSpec("", "", "", kernel_name)
        self._specs[kernel_name] = (found, now)
        return found

    def prepare(self, kernel_name: str, spec: RuntimeSpec | None = None) -> None:
        """Keep kernels of ``kernel_name`` warm from now on (a worker's runtimes), started as the
        runtime ``spec`` says (its preload and startMethod)."""
        if spec is not None:
            self._specs[kernel_name] = (spec, time.monotonic())
        self.pool_for(kernel_name)

    def start(self) -> None:
        """Keep every pool filled in the background (runners forked once the runner template is up)."""
        if self.runner_template is not None:
            self.runner_template.start()
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
        self.templates.close()
        if self.runner_template is not None:
            self.runner_template.close()

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
        if job.type == JobType.OPEN_NOTEBOOK:
            return self._open_notebook(job)
        workdir = self.settings.store.data_dir / "jobs" / f"{job.job_id}-{job.attempt}"
        spec = self.spec_of(job)
        self._specs[spec.kernel_name] = (spec, time.monotonic())  # the pool follows its latest runtime
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

    def _open_notebook(self, job: Job) -> Job | None:
        """An openNotebook job: the container host starts (or reuses) the user's Jupyter server."""
        self.events.started(job)
        if self.lab is not None:
            ended = self.lab.run(job)
            if ended is not None and ended.ended:
                self.events.ended(ended)
            return ended
        failure = Failure(
            FailureReason.NOTEBOOK_SERVER_FAILED, "This server does not host interactive notebooks."
        )
        ended = self.store.transition(
            job.job_id, JobStatus.FAILED, self.clock(), attempt=job.attempt,
            update=JobUpdate(failure=failure), expected=RUNNING,
        )  # fmt: skip
        return ended or self.store.get(job.job_id)
