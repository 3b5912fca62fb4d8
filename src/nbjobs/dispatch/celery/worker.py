"""One `nbjobs worker` process: a Celery worker whose one task claims a job and supervises it.

The task is thin: claim by id and attempt (a compare-and-set, so duplicates do nothing), then the
same ``Supervisor.run`` the embedded pool uses: a runner process per job in its own session, a
fresh kernel, heartbeats, cancel and deadline, the single fenced final write.

Celery runs the task on its **thread** pool, not prefork: the supervisor is thread-based, and a
runner's parent-death signal follows the thread that spawned it. Threads of one worker process
live as long as the process, so ``kill -9`` of the worker takes every runner with it (and each
kernel follows its runner), exactly as in ``nbjobs serve``. Prefork would put a pool child between
the worker and the runner, which outlives a killed parent. We never need what threads lack
(``revoke(terminate=True)``, Celery time limits): cancel and deadlines are the supervisor's.

Besides the task the node keeps a row in the ``workers`` table fresh (the machines view), ends on
start what an earlier process on this host left running, and drains on SIGTERM: it stops taking
messages, lets running jobs finish for up to ``drain_seconds``, then ends them as lost. What it needs
for that (recovery, the cancel listener, its background duties) comes wired from ``roots/worker.py``
as small Protocols: this package knows neither the service layer nor a store.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nbjobs import __version__
from nbjobs.clock import Clock
from nbjobs.dispatch.base import JobRunner
from nbjobs.dispatch.celery.publisher import TASK_NAME, CeleryDispatcher, queue_name
from nbjobs.errors import StoreUnavailable
from nbjobs.models.events import Slots
from nbjobs.models.jobs import Job, JobStatus
from nbjobs.models.runtimes import RuntimeSpec
from nbjobs.models.stores import JobStore, WorkerStore
from nbjobs.models.workers import WorkerRecord
from nbjobs.settings import Settings
from nbjobs.telemetry.logs import log_context

log = logging.getLogger(__name__)

ONLINE, DRAINING = "online", "draining"
FORGET_AFTER_MS = 24 * 3_600_000  # rows of workers silent this long are dropped at a worker's start


class JobRecovery(Protocol):
    """``service.jobs.recovery.Recovery`` as the worker uses it."""

    def after_restart(self, host_prefix: str, own_prefix: str) -> list[Job]: ...

    def abandon_running(self, worker_prefix: str, message: str) -> list[Job]: ...


class Duties(Protocol):
    """``service.housekeeping.Housekeeper``: the worker's periodic duties (heartbeat, lease reaper)."""

    def tick(self, now: int | None = None) -> list[str]: ...


class Listener(Protocol):
    """A running cancel listener (PostgreSQL LISTEN/NOTIFY)."""

    def stop(self) -> None: ...


@dataclass
class WorkerNode:
    """The worker's parts; ``run`` blocks until the Celery worker has shut down."""

    settings: Settings
    store: JobStore
    workers: WorkerStore
    supervisor: JobRunner
    dispatcher: CeleryDispatcher
    clock: Clock
    runtimes: list[RuntimeSpec]
    concurrency: int
    worker_id: str  # "<host>/<pid>-<boot>": every job this process claims has it as prefix
    recovery: JobRecovery
    duties: Duties | None = None  # wired by the root: the node's heartbeat, the lease reaper
    # Starts a cancel listener that calls back with a job id (None: rely on the supervisor's row poll).
    listen_cancels: Callable[[Callable[[str], None]], Listener] | None = None
    hostname: str = field(default_factory=socket.gethostname)
    _draining: threading.Event = field(default_factory=threading.Event)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _drain_started: float = 0.0
    _busy: int = 0  # slots running a job now
    _busy_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def queues(self) -> list[str]:
        return [queue_name(spec.runtime_id) for spec in self.runtimes]

    @property
    def lease_ms(self) -> int:
        return int(self.settings.execution.lease_seconds * 1000)

    # -- the task -----------------------------------------------------------------------------------
    def run_job(self, job_id: str, attempt: int) -> None:
        """Claim attempt ``attempt`` of the job and run it; a message that claims nothing is dropped.
        Every line logged meanwhile carries the job id (and, once claimed, its owner and runtime)."""
        with log_context(job_id=job_id):
            try:
                self._run_job(job_id, attempt)
            except StoreUnavailable as exc:  # an outage, not a bug: say what becomes of the job
                log.warning("job %s attempt %s: the database is unavailable (%s); unclaimed, it is "
                            "published again; claimed, its lease ends it", job_id, attempt,
                            exc.__cause__ or exc)  # fmt: skip

    def _run_job(self, job_id: str, attempt: int) -> None:
        if self._draining.is_set():  # a message that arrived as we stopped consuming: hand it back
            job = self.store.get(job_id)
            if job is not None and job.status == JobStatus.SUBMITTED:
                self.dispatcher.notify(job)
            return
        slot = threading.current_thread().name
        cap = self.settings.limits.max_jobs_per_user
        job = self.store.claim(
            job_id, attempt, f"{self.worker_id}/{slot}", self.clock(), self.lease_ms, per_user_cap=cap
        )
        if job is None:
            # Claimed, cancelled or gone already -- or its user is at the cap: then it stays SUBMITTED and
            # the reconciler publishes it again later.
            log.info("job %s attempt %s: not claimed; message dropped", job_id, attempt)
            return
        log.info("running job %s (attempt %s) on %s", job_id, attempt, slot)
        with self._busy_lock:
            self._busy += 1
        try:
            ended = self.supervisor.run(job)
        finally:
            with self._busy_lock:
                self._busy -= 1
        log.info("job %s attempt %s: %s", job_id, attempt, ended.status if ended else "fenced out")

    def slots(self) -> Slots:
        """This worker's concurrency and how many slots run a job now (read at scrape time)."""
        return Slots(self._busy, self.concurrency)

    # -- lifecycle ----------------------------------------------------------------------------------
    def recover(self) -> int:
        """End what earlier processes on this host left running (not the jobs of live workers)."""
        self.workers.prune(self.clock() - FORGET_AFTER_MS)
        return len(self.recovery.after_restart(f"{self.hostname}/", self.worker_id))

    def register(self, state: str = ONLINE) -> None:
        now = self.clock()
        self.workers.register(
            WorkerRecord(
                worker_id=self.worker_id,
                hostname=self.hostname,
                pid=os.getpid(),
                runtimes=tuple({"id": s.runtime_id, "name": s.name} for s in self.runtimes),
                queues=tuple(self.queues),
                concurrency=self.concurrency,
                state=state,
                version=__version__,
                started=now,
                last_heartbeat=now,
            )
        )

    def beat(self) -> None:
        """Renew this worker's row in the registry (re-creating it if it was pruned meanwhile)."""
        state = DRAINING if self._draining.is_set() else ONLINE
        if not self.workers.beat(self.worker_id, self.clock(), state):
            self.register(state)

    def drain(self) -> None:
        """Stop taking jobs (Celery stops consuming on its warm shutdown); running ones go on.
        Called from a signal handler: it only sets flags, the agent thread does the rest."""
        if not self._draining.is_set():
            self._drain_started = time.monotonic()
            self._draining.set()

    def abandon_running(self, message: str) -> int:
        """End this worker's running jobs as lost (or re-queue them, by their policy). Their
        supervisors are woken and kill the runner and kernel."""
        return len(self.recovery.abandon_running(self.worker_id + "/", message))

    def run(self, *, loglevel: str = "INFO") -> int:
        """Serve the queues until SIGTERM (drain) or SIGQUIT/second SIGINT (cold); the exit code."""
        from celery import signals

        app = self.dispatcher.app
        app.task(name=TASK_NAME, ignore_result=True, acks_late=False)(self.run_job)
        celery_name = f"nbjobs-{os.getpid()}@{self.hostname}"

        def on_shutdown(sender: str | None = None, how: str = "", **_: object) -> None:
            if sender == celery_name:
                self.drain()

        signals.worker_shutting_down.connect(on_shutdown, weak=False)
        for spec in self.runtimes:
            self.supervisor.prepare(spec.kernel_name, spec)  # warm kernels for what this worker serves
        self.register()
        self.recover()
        self.supervisor.start()
        # cancels reach us at once, not at the next poll
        listener = self.listen_cancels(self.supervisor.wake) if self.listen_cancels is not None else None
        agent = threading.Thread(target=self._agent, name="nbjobs-worker-agent", daemon=True)
        agent.start()
        worker = app.Worker(
            hostname=celery_name,
            pool=waking_thread_pool(lambda: getattr(worker, "hub", None)),
            concurrency=self.concurrency,
            queues=self.queues,
            loglevel=loglevel,
            without_mingle=True,
            without_gossip=True,
            quiet=True,
        )
        try:
            worker.start()
        finally:
            self._stopped.set()
            agent.join(timeout=5)
            if listener is not None:
                listener.stop()
            signals.worker_shutting_down.disconnect(on_shutdown)
            self.supervisor.close()
            self.workers.remove(self.worker_id)
        return worker.exitcode or 0

    def _agent(self) -> None:
        """Run the node's duties (heartbeat, lease reaper); once draining, end what still runs when
        the grace is over. A draining node announces itself in the registry at once."""
        announced, abandoned = False, False
        drain_seconds = self.settings.pool.drain_seconds
        while not self._stopped.wait(0.5):
            try:
                if self._draining.is_set() and not announced:
                    announced = True
                    log.warning("draining: running jobs may finish within %gs", drain_seconds)
                    self.beat()
                if self.duties is not None:
                    self.duties.tick()
                over = announced and time.monotonic() - self._drain_started >= drain_seconds
                if over and not abandoned:
                    abandoned = True
                    self.abandon_running("the worker was stopped before the job finished")
            except Exception:
                log.exception("worker housekeeping failed; will retry")


def waking_thread_pool(hub: Callable[[], Any]) -> type:
    """Celery's thread pool, plus: when a task's slot frees, wake the consumer's event loop.

    With ``worker_disable_prefetch`` (Redis) the consumer fetches only while a slot is free, and it
    checks at the top of each event-loop turn; an idle loop sleeps up to 1 s in ``poll``. Without a
    wake-up every job waited a mean 0.5 s in the queue after a slot freed (measured: the Celery
    backend ran 66 % of the embedded rate on trivial jobs). ``Hub.call_soon`` is thread-safe and
    writes to the loop's waker socket; it is called after Celery's own completion callback, which
    is what frees the slot."""
    from celery.concurrency.thread import TaskPool

    def _nothing() -> None:
        return None

    class WakingThreadPool(TaskPool):
        def on_apply(self, target: Any, args: Any = None, kwargs: Any = None, callback: Any = None,
                     accept_callback: Any = None, **options: Any) -> Any:  # fmt: skip
            def done(*result: Any) -> None:
                try:
                    if callback is not None:
                        callback(*result)
                finally:
                    loop = hub()
                    if loop is not None:
                        loop.call_soon(_nothing)

            return super().on_apply(target, args, kwargs, done, accept_callback, **options)

    return WakingThreadPool
