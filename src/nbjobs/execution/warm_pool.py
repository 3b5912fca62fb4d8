"""The warm pool: runner processes started ahead, each holding a fresh kernel that is ready to run.

A job takes one runner (and so one kernel), uses it once, and the runner exits with its kernel;
the pool refills in the background. Nothing is ever reused between jobs. Size 0 means every job
starts cold; an empty pool falls back to a cold start. Runners idle longer than the TTL are
recycled, and a runner whose kernel dies while waiting exits, so the pool notices and replaces it.

Runners are started by one long-lived filler thread (or, in burst mode, by the caller): Linux's
parent-death signal, which kills a spawned runner when the server dies, follows the *thread* that
spawned it. A runner is forked from the process's runner template when there is one (``launch``:
``fork/runners.py``), else spawned; either way it is a process of its own that serves one job.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nbjobs.execution.fork.runners import spawn_runner
from nbjobs.execution.kernels import StartMethod
from nbjobs.execution.processes import RunnerProcess, kill_process_tree
from nbjobs.models.events import PoolState
from nbjobs.settings import Settings

log = logging.getLogger(__name__)

# (runner arguments, environment, working directory) -> the started runner process
Launcher = Callable[[list[str], dict[str, str], Path], RunnerProcess]


def runner_env(settings: Settings) -> dict[str, str]:
    """A runner's environment (the server's, without secrets), but for the supervisor's pid."""
    env = dict(settings.execution.kernel_env)
    # Runtimes with their own environment have kernelspecs under <data dir>/jupyter/kernels.
    kernels = str((settings.store.data_dir / "jupyter").resolve())
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (kernels, env.get("JUPYTER_PATH", "")) if p)
    return env


@dataclass
class Runner:
    """A started runner process, waiting on stdin for its one request."""

    proc: RunnerProcess
    kernel_name: str
    started: float
    log_path: Path
    taken_ready: bool = False  # its kernel was ready when a job took it (a hit)
    start: StartMethod = field(default_factory=StartMethod)  # how its kernel is started

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def ready_path(self) -> Path:
        return self.log_path.with_suffix(".ready")

    @property
    def warm(self) -> bool:
        """True once the runner's kernel is started, connected and has run its set-up."""
        return self.ready_path.exists()

    @property
    def kernel(self) -> tuple[int, str]:
        """The warm kernel's pid and start method (fork | spawn); (0, "") before it is ready."""
        try:
            pid, method = self.ready_path.read_text().split()
        except (OSError, ValueError):
            return 0, ""
        return int(pid), method

    def forget(self) -> None:
        """Remove the files the runner leaves in the scratch directory."""
        self.log_path.unlink(missing_ok=True)
        self.ready_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Retire a runner that never got a job: EOF on stdin makes it exit; kill it if it does not."""
        try:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            kill_process_tree(self.proc.pid)
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.forget()


class WarmPool:
    """Up to ``size`` warm runners for one kernel; ``take`` never blocks on the pool."""

    def __init__(
        self,
        settings: Settings,
        kernel_name: str,
        plan: Callable[[], StartMethod] | None = None,
        launch: Launcher | None = None,
    ) -> None:
        self.settings = settings
        self.kernel_name = kernel_name
        # how a runner process is started: forked from the runner template, or spawned
        self.launch: Launcher = launch or spawn_runner
        # How this pool's kernels start now (fork from a template, or spawn); asked before each runner
        # is started and when one is taken: a runner whose kernel came from another generation (the
        # runtime's preload or environment changed since) is retired, not given a job.
        self.plan = plan or StartMethod
        self.size = settings.pool.warm_pool_size
        self.ttl = settings.pool.warm_pool_ttl_seconds
        self.scratch = settings.store.data_dir / "jobs"
        self._ready: deque[Runner] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._filler: threading.Thread | None = None
        self._in_flight = 0
        self.hits = 0  # takes that found a runner with its kernel ready
        self.misses = 0  # takes that found none ready: a runner still warming up, or a cold start

    def spawn(self, kernel_name: str, start: StartMethod | None = None) -> Runner:
        """Start a runner that starts ``kernel_name`` at once (in the calling thread)."""
        start = self.plan() if start is None else start
        self.scratch.mkdir(mode=0o711, parents=True, exist_ok=True)
        env = {**runner_env(self.settings), "NBJOBS_SUPERVISOR_PID": str(os.getpid())}
        argv = [
            "--kernel",
            kernel_name,
            "--stream-cap",
            str(self.settings.limits.max_cell_output_bytes),
            "--run-as",
            self.settings.execution.kernel_user,
            *start.arguments(),
        ]
        proc = self.launch(argv, env, self.scratch)
        log_path = self.scratch / f"runner-{proc.pid}.log"
        return Runner(proc, kernel_name, time.monotonic(), log_path, start=start)

    def warm_count(self) -> int:
        """How many waiting runners have their kernel ready."""
        with self._lock:
            return sum(1 for r in self._ready if r.alive and r.warm)

    def take(self, kernel_name: str) -> Runner:
        """A warm runner for ``kernel_name`` if one is ready, else a cold one started now."""
        runner = None
        start = self.plan()
        with self._lock:
            stale = [
                r
                for r in self._ready
                if not r.alive or r.kernel_name != kernel_name or r.start.generation != start.generation
            ]
            for candidate in stale:
                self._ready.remove(candidate)
                self._retire_later(candidate)
            # A runner whose kernel is ready first; one still warming up is next best.
            for candidate in sorted(self._ready, key=lambda r: not r.warm):
                self._ready.remove(candidate)
                runner = candidate
                break
            if runner is not None and runner.warm:
                runner.taken_ready = True
                self.hits += 1
            else:
                self.misses += 1
            self._in_flight += 1
        # No refill yet: starting a runner and its kernel costs ~0.5 CPU-seconds, which would compete with
        # the job that just took one. ``release`` (the job ended) or the filler's next round refills.
        return runner if runner is not None else self.spawn(kernel_name, start)

    def state(self) -> PoolState:
        """Ready kernels now and the takes so far (the metrics read it at scrape time)."""
        return PoolState(self.kernel_name, self.warm_count(), self.hits, self.misses)

    def release(self) -> None:
        """A job that took a runner has ended: refill now."""
        with self._lock:
            self._in_flight = max(self._in_flight - 1, 0)
        self._wake.set()

    def idle(self) -> int:
        """How many runners wait in the pool now."""
        return len(self.waiting())

    def waiting(self) -> list[Runner]:
        """The runners waiting in the pool now, oldest first."""
        with self._lock:
            return list(self._ready)

    def fill(self) -> None:
        """Replace dead and expired runners and top the pool up to its size (in the calling thread)."""
        now = time.monotonic()
        start = self.plan()
        with self._lock:
            keep = [
                r
                for r in self._ready
                if r.alive and now - r.started < self.ttl and r.start.generation == start.generation
            ]
            gone = [r for r in self._ready if r not in keep]
            self._ready = deque(keep)
            missing = self.size - len(keep)
        for runner in gone:
            why = "died" if not runner.alive else "expired" if now - runner.started >= self.ttl else "changed"
            log.info("replacing pool runner %s (%s)", runner.proc.pid, why)
            runner.close()
        for _ in range(max(missing, 0)):
            if self._stopping.is_set():
                return
            runner = self.spawn(self.kernel_name, start)
            with self._lock:
                self._ready.append(runner)

    def start(self) -> None:
        """Keep the pool filled from a background thread until ``close``."""
        if self.size <= 0 or self._filler is not None:
            return
        self._wake.set()  # fill at once
        self._filler = threading.Thread(target=self._fill_loop, name="nbjobs-pool-filler", daemon=True)
        self._filler.start()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._filler is not None:
            self._filler.join(timeout=10)
        with self._lock:
            runners, self._ready = list(self._ready), deque()
        for runner in runners:
            runner.close()

    def _fill_loop(self) -> None:
        while not self._stopping.is_set():
            woken = self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                busy = self._in_flight > 0
            if busy and not woken:
                continue  # periodic rounds wait for idle moments; a job's end (release) always refills
            try:
                self.fill()
            except Exception:
                log.exception("could not refill the kernel pool; retrying")

    def _retire_later(self, runner: Runner) -> None:
        threading.Thread(target=runner.close, daemon=True).start()
