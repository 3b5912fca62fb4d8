"""Signalling process trees: how nbjobs makes sure a job leaves nothing running."""

from __future__ import annotations

import contextlib
import os
import signal
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
