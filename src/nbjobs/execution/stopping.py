"""Stopping a run's processes: the staged stop of a cancel or deadline, the kill, the sweep after the end.

A staged stop (``StagedStop``) gives the notebook a chance to end cleanly, then makes sure nothing is
left. Its stages, timed from the moment the stop begins:

=============================  ===================================================================
``0``                          the runner is told to start no further cell (SIGUSR1) and the
                               kernel's process tree is interrupted (SIGINT: KeyboardInterrupt in
                               the running cell); a kernel that starts later is interrupted as
                               soon as it is known
``grace``                      SIGTERM to the kernel's process tree
``grace + kill_grace``         SIGKILL to the kernel's process tree
``grace + 2 × kill_grace``     SIGKILL to the runner's process tree
=============================  ===================================================================

``grace`` is NBJOBS_CANCEL_GRACE_SECONDS (5 s by default) and ``kill_grace`` NBJOBS_KILL_GRACE_SECONDS
(3 s). A stage is taken by the supervisor's watch loop calling ``advance`` (every poll, at most 0.2 s
apart), so each lands within one poll of its time; the stop ends as soon as the runner reports its end,
whatever the stage. A run that must end at once (its lease is lost, its job was ended elsewhere) skips
the stages: ``kill_run``. After every run ``sweep`` makes sure neither process tree outlives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable

from nbjobs.execution.processes import RunnerProcess, kill_process_tree
from nbjobs.models.jobs import FailureReason


class StagedStop:
    """One staged stop in progress: why, since when, and the last stage taken."""

    def __init__(
        self,
        reason: FailureReason,
        runner_pid: int,
        *,
        grace: float,
        kill_grace: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reason = reason
        self.runner_pid = runner_pid  # 0: no runner yet
        self.grace = grace
        self.kill_grace = kill_grace
        self._clock = clock
        self.started = clock()
        self.stage = 0  # 0 interrupted, 1 terminated, 2 killed kernel, 3 killed runner

    def begin(self, kernel_pid: int) -> None:
        """Stage 0: tell the runner to start no further cell, and interrupt the one running now."""
        if self.runner_pid:
            with contextlib.suppress(OSError):
                os.kill(self.runner_pid, signal.SIGUSR1)
        _signal_kernel(kernel_pid, signal.SIGINT)

    def kernel_started(self, kernel_pid: int) -> None:
        """The kernel became known after the stop began (it was starting): interrupt it now."""
        _signal_kernel(kernel_pid, signal.SIGINT)

    def advance(self, kernel_pid: int) -> None:
        """Take the next stage if its time has come (at most one stage per call)."""
        elapsed = self._clock() - self.started
        grace, kill_grace = self.grace, self.kill_grace
        if self.stage == 0 and elapsed >= grace:
            self.stage = 1
            _signal_kernel(kernel_pid, signal.SIGTERM)
        elif self.stage == 1 and elapsed >= grace + kill_grace:
            self.stage = 2
            _signal_kernel(kernel_pid, signal.SIGKILL)
        elif self.stage == 2 and elapsed >= grace + 2 * kill_grace:
            self.stage = 3
            if self.runner_pid:
                kill_process_tree(self.runner_pid)


def kill_run(kernel_pid: int, runner_pid: int) -> None:
    """End a run now, without stages: SIGKILL the kernel's process tree, then the runner's."""
    if kernel_pid:
        kill_process_tree(kernel_pid)
    kill_process_tree(runner_pid)


def sweep(proc: RunnerProcess, reader: threading.Thread, kernel_pid: int, *, reported: bool) -> None:
    """Leave nothing of an ended run behind and collect its runner.

    ``reported``: the runner reported its end, having swept its kernel's process tree itself, so a
    group kill is enough and reaping need not hold up the job's end. Otherwise both trees are killed
    and the runner is reaped before this returns.
    """
    if reported:
        for pgid in (kernel_pid, proc.pid):
            with contextlib.suppress(OSError):
                if pgid:
                    os.killpg(pgid, signal.SIGKILL)
        threading.Thread(target=reap, args=(proc, reader), daemon=True).start()
    else:
        kill_run(kernel_pid, proc.pid)
        reap(proc, reader)


def reap(proc: RunnerProcess, reader: threading.Thread) -> None:
    """Collect an ended runner: its exit status and the end of its event pipe."""
    proc.wait()
    reader.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def _signal_kernel(kernel_pid: int, sig: int) -> None:
    if kernel_pid:
        kill_process_tree(kernel_pid, sig)
