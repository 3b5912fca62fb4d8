"""Signalling process trees: how nbjobs makes sure a job leaves nothing running."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from pathlib import Path
from typing import IO, Protocol

import psutil


def descendants(pid: int) -> list[int]:
    """Every living descendant of ``pid``.

    Reads ``/proc/<pid>/task/*/children`` (O(descendants)); psutil's scan of every process on the
    machine costs ~4 ms and is only the fallback where that file does not exist.
    """
    found: list[int] = []
    stack = [pid]
    try:
        while stack:
            parent = stack.pop()
            for children in Path(f"/proc/{parent}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    kids = [int(k) for k in children.read_text().split()]
                    found.extend(kids)
                    stack.extend(kids)
        if found or Path(f"/proc/{pid}/task").exists():
            return found
    except OSError:
        pass
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def kill_process_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal ``pid``'s process group and every descendant (even ones that left the group)."""
    family = descendants(pid)
    with contextlib.suppress(OSError):
        os.killpg(pid, sig)
    for child in family:
        with contextlib.suppress(OSError):
            os.kill(child, sig)


class RunnerProcess(Protocol):
    """What the supervisor uses of a runner process: ``subprocess.Popen`` or ``ForkedRunner``."""

    pid: int
    returncode: int | None
    stdin: IO[bytes] | None
    stdout: IO[bytes] | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class ForkedProcess:
    """The ``Popen`` face of a process a template forked (not our child: a pidfd stands in for
    ``waitpid``): a forked kernel, which jupyter_client's local provisioner polls, signals, kills and
    waits on as usual, and the base of a forked runner. Its exit status is the template's to collect;
    ``returncode`` is -1 once it has exited (a subclass may learn the real one in ``_exited``).
    ``pidfd``: one already open on it (taken over), else one is opened here."""

    stdin: IO[bytes] | None = None
    stdout: IO[bytes] | None = None
    stderr: IO[bytes] | None = None

    def __init__(self, pid: int, pidfd: int = -1) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.args = [f"forked process {pid}"]
        self._fd = pidfd
        if pidfd < 0:
            try:
                self._fd = os.pidfd_open(pid)
            except ProcessLookupError:  # died before we looked
                self._fd, self.returncode = -1, -1

    def poll(self) -> int | None:
        if self.returncode is None:
            readable, _, _ = select.select([self._fd], [], [], 0)
            if readable:
                self._exited()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            readable, _, _ = select.select([self._fd], [], [], timeout)
            if not readable:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self._exited()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._fd, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _exited(self) -> None:
        self.returncode = -1
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
