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
messages, lets running jobs finish for up to ``drain_seconds``, then ends them as lost.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nbjobs import __version__
from nbjobs.clock import Clock
from nbjobs.dispatch.celery.publisher import TASK_NAME, CeleryDispatcher, queue_name
from nbjobs.execution.supervisor import Supervisor
from nbjobs.models.jobs import JobStatus
from nbjobs.models.runtimes import RuntimeSpec
from nbjobs.models.workers import WorkerRecord
from nbjobs.service.jobs.recovery import end_lost, recover_host
from nbjobs.settings import Settings
from nbjobs.store.jobs import SqlJobStore
from nbjobs.store.notify import CancelListener
from nbjobs.store.workers import SqlWorkerStore

log = logging.getLogger(__name__)

ONLINE, DRAINING = "online", "draining"
FORGET_AFTER_MS = 24 * 3_600_000  # rows of workers silent this long are dropped at a worker's start


@dataclass
class WorkerNode:
    """The worker's parts; ``run`` blocks until the Celery worker has shut down."""

    settings: Settings
    store: SqlJobStore
    workers: SqlWorkerStore
    supervisor: Supervisor
    dispatcher: CeleryDispatcher
    clock: Clock
    runtimes: list[RuntimeSpec]
    concurrency: int
    worker_id: str  # "<host>/<pid>-<boot>": every job this process claims has it as prefix
    hostname: str = field(default_factory=socket.gethostname)
    _draining: threading.Event = field(default_factory=threading.Event)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _drain_started: float = 0.0

    @property
    def queues(self) -> list[str]:
        return [queue_name(spec.runtime_id) for spec in self.runtimes]

    @property
    def lease_ms(self) -> int:
        return int(self.settings.lease_seconds * 1000)

    # -- the task -----------------------------------------------------------------------------------
    def run_job(self, job_id: str, attempt: int) -> None:
        """Claim attempt ``attempt`` of the job and run it; a message that claims nothing is dropped."""
        if self._draining.is_set():  # a message that arrived as we stopped consuming: hand it back
            job = self.store.get(job_id)
            if job is not None and job.status == JobStatus.SUBMITTED:
                self.dispatcher.notify(job)
            return
        slot = threading.current_thread().name
        cap = self.settings.max_jobs_per_user
        job = self.store.claim(
            job_id, attempt, f"{self.worker_id}/{slot}", self.clock(), self.lease_ms, per_user_cap=cap
        )
        if job is None:
            # Claimed, cancelled or gone already -- or its user is at the cap: then it stays SUBMITTED and
            # the reconciler publishes it again later.
            log.info("job %s attempt %s: not claimed; message dropped", job_id, attempt)
            return
        log.info("running job %s (attempt %s) on %s", job_id, attempt, slot)
        ended = self.supervisor.run(job)
        log.info("job %s attempt %s: %s", job_id, attempt, ended.status if ended else "fenced out")

    # -- lifecycle ----------------------------------------------------------------------------------
    def recover(self) -> int:
        """End what earlier processes on this host left running (not the jobs of live workers)."""
        now = self.clock()
        self.workers.prune(now - FORGET_AFTER_MS)
        live = [w.worker_id for w in self.workers.live(now - self.lease_ms) if w.worker_id != self.worker_id]
        changed = recover_host(self.store, f"{self.hostname}/", (self.worker_id, *live), self.clock)
        for job in changed:
            log.warning("recovered job %s left by an earlier worker: %s", job.job_id, job.status)
            if job.status == JobStatus.SUBMITTED:
                self.dispatcher.notify(job)
        return len(changed)

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
        supervisors see the job ended at their next poll and kill the runner and kernel."""
        count = 0
        for job in self.store.running_on(self.worker_id + "/"):
            ended = end_lost(self.store, job, self.clock, message)
            if ended is None:
                continue
            count += 1
            log.warning("job %s: %s; now %s", job.job_id, message, ended.status)
            if ended.status == JobStatus.SUBMITTED:
                self.dispatcher.notify(ended)
        return count

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
            self.supervisor.pool_for(spec.kernel_name)  # warm kernels for what this worker serves
        self.register()
        self.recover()
        self.supervisor.start()
        listener = None
        if self.store.engine.dialect.name == "postgresql":  # cancels reach us at once, not at the next poll
            listener = CancelListener(self.store.engine, self.supervisor.wake)
            listener.start()
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
        """Heartbeat the registry; once draining, end what still runs when the grace is over."""
        next_beat, announced, abandoned = 0.0, False, False
        while not self._stopped.wait(0.5):
            now = time.monotonic()
            try:
                if self._draining.is_set() and not announced:
                    announced, next_beat = True, 0.0
                    log.warning("draining: running jobs may finish within %gs", self.settings.drain_seconds)
                if now >= next_beat:
                    next_beat = now + self.settings.heartbeat_seconds
                    self.beat()
                over = announced and now - self._drain_started >= self.settings.drain_seconds
                if over and not abandoned:
                    abandoned = True
                    self.abandon_running("the worker was stopped before the job finished")
            except Exception:
                log.exception("worker heartbeat failed; will retry")


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
