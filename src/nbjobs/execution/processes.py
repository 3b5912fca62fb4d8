"""Signalling process trees: how nbjobs makes sure a job leaves nothing running."""

from __future__ import annotations

import contextlib
import os
import signal

import psutil


def kill_process_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal ``pid``'s process group and every descendant (even ones that left the group)."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    with contextlib.suppress(OSError):
        os.killpg(pid, sig)
    for proc in descendants:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
