"""The embedded dispatcher: N worker threads in the server process, each claiming and running jobs.

It implements ``dispatch.base.Dispatcher``: ``notify`` only wakes a thread, because the threads claim
from the job table directly (the table is the queue). ``run(burst=True)`` is the deterministic mode for
tests: claim and run in the caller's thread until nothing waits."""

from __future__ import annotations

import logging
import os
import threading
import time

from nbjobs import __version__
from nbjobs.clock import Clock
from nbjobs.dispatch.base import JobRunner
from nbjobs.errors import StoreUnavailable
from nbjobs.models.events import Slots
from nbjobs.models.jobs import Job
from nbjobs.models.stores import JobStore
from nbjobs.models.workers import WorkerRecord
from nbjobs.settings import Settings

log = logging.getLogger(__name__)


class LocalDispatcher:
    """Claims SUBMITTED jobs atomically and runs each with the ``JobRunner`` (the supervisor)."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        clock: Clock,
        worker_prefix: str,
        supervisor: JobRunner,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.worker_prefix = worker_prefix
        self.supervisor = supervisor
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0  # slots running a job now
        self._busy_lock = threading.Lock()
        self._started = 0  # epoch ms of start(); 0 while not started

    def notify(self, _job: Job | None = None) -> None:
        """A job was submitted: wake an idle worker now instead of at its next poll."""
        self._wake.set()

    def run_one(self, slot: int = 0) -> Job | None:
        """Claim and run one job in the calling thread; None when nothing was waiting."""
        lease_ms = int(self.settings.execution.lease_seconds * 1000)
        worker = f"{self.worker_prefix}/{slot}"
        cap = self.settings.limits.max_jobs_per_user
        job = self.store.claim_next(worker, self.clock(), lease_ms, per_user_cap=cap)
        if job is None:
            return None
        log.info("worker %s runs job %s (attempt %s)", slot, job.job_id, job.attempt)
        with self._busy_lock:
            self._busy += 1
        try:
            return self.supervisor.run(job) or job
        finally:
            with self._busy_lock:
                self._busy -= 1

    def slots(self) -> Slots:
        """The pool's threads and how many run a job now (the metrics read it at scrape time)."""
        return Slots(self._busy, len(self._threads))

    def machine(self, runtimes: tuple[dict[str, str], ...]) -> WorkerRecord:
        """This pool as the machines view shows a worker, as of now (it has no row in the worker
        registry: answering is its heartbeat). ``runtimes``: what it serves ({"id", "name"} each)."""
        return WorkerRecord(
            worker_id=self.worker_prefix,
            hostname=self.worker_prefix.split("/", 1)[0],
            pid=os.getpid(),
            runtimes=runtimes,
            queues=(),
            concurrency=len(self._threads),
            state="draining" if self._stopping.is_set() else "online",
            version=__version__,
            started=self._started,
            last_heartbeat=self.clock(),
        )

    def run(self, *, burst: bool = False) -> list[Job]:
        """Run jobs in this thread until none is waiting (burst) — the deterministic mode for tests."""
        assert burst, "only burst mode runs in the caller's thread; use start() for the pool"
        done = []
        try:
            self.supervisor.fill()
            while (job := self.run_one()) is not None:
                done.append(job)
        finally:
            self.supervisor.close()
        return done

    def start(self, workers: int | None = None) -> None:
        """Start ``workers`` threads (default: the configured number)."""
        workers = self.settings.pool.workers if workers is None else workers
        if workers > 0:
            self.supervisor.start()
            self._started = self.clock()
        for slot in range(workers):
            thread = threading.Thread(
                target=self._loop, args=(slot,), name=f"nbjobs-worker-{slot}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def drain(self, timeout: float) -> bool:
        """Stop taking jobs and wait up to ``timeout`` seconds in all for the running ones to end;
        True when none still runs."""
        self._stopping.set()
        self._wake.set()
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking jobs; wait up to ``timeout`` for running ones to finish."""
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self.supervisor.close()

    def _loop(self, slot: int) -> None:
        outage = False  # said once per outage, not at every poll
        while not self._stopping.is_set():
            try:
                job = self.run_one(slot)
                if outage:
                    outage = False
                    log.warning("worker %s: the job store is back", slot)
            except StoreUnavailable as exc:  # the database restarts, or the disk is full: wait it out
                if not outage:
                    outage = True
                    log.warning("worker %s: %s (%s); retrying", slot, exc, exc.__cause__ or exc)
                job = None
            except Exception:  # a store hiccup must not kill the worker thread
                log.exception("worker %s failed; retrying", slot)
                job = None
            if job is None and not self._stopping.is_set():
                self._wake.wait(self.settings.execution.poll_seconds)
                self._wake.clear()
