"""Waiting on a condition instead of sleeping a fixed time: the suite runs on busy 2-core machines.

A test that sleeps "long enough for X to happen" fails when the machine is five times slower than the
author's; one that polls until X holds, with a bound far past any plausible delay, only gets slower.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Far past what a quiet machine needs (kernel start ~0.4 s), and past 10x that under load.
GENEROUS = 60.0


def eventually(predicate: Callable[[], T], timeout: float = GENEROUS, what: str = "the condition") -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def in_sleep(pid: int) -> bool:
    """The process's main thread is blocked in ``time.sleep`` (Linux: waiting in ``hrtimer_nanosleep``).

    A cancel test that needs the kernel *inside* the sleeping cell (an interrupt that arrives while the
    cell is still being sent is ignored by an idle ipykernel) waits on this rather than sleeping a guess.
    """
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "hrtimer_nanosleep"
    except OSError:
        return False
