"""The job runner process: ``python -m nbjobs.execution.runner < request.json``.

It runs one notebook through the engine and speaks to its supervisor as JSON lines on stdout:
``{"event": "kernel", "pid": N, "seconds": S, "warm": W}`` (how long the kernel took to start, and
whether the pool's runner started it ahead), ``{"event": "progress", ...}`` at each cell's start,
``{"event": "cell", "cell", "ok"}`` at its end, ``{"event": "output", ...}`` (a cell's new stream
output, batched) and a final ``{"event": "done", ...}``.
The executed notebook goes to the ``output`` path given in the request. The runner touches no
database: the supervisor is the single writer of job state.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import json
import os
import select
import signal
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import IO, Any

from nbjobs.execution.engine import ExecutionRequest, Outcome, execute
from nbjobs.execution.kernels import StartMethod, WarmKernel, kernel_exists
from nbjobs.models.live import TAIL_CHARS
from nbjobs.models.parameters import NotebookParameters

PR_SET_PDEATHSIG = 1
OUTPUT_INTERVAL = 0.2  # seconds between two output events of a running cell


def request_to_json(request: ExecutionRequest, output_path: Path) -> bytes:
    """The request as the runner reads it on stdin; the parameters keep any literals already rendered."""
    data: dict[str, Any] = {f.name: getattr(request, f.name) for f in fields(request)}
    data["notebook"] = base64.b64encode(request.notebook).decode()
    data["parameters"] = request.parameters.to_json()
    data["env"] = dict(request.env) if request.env is not None else None
    data["output"] = str(output_path)
    return json.dumps(data).encode()


def request_from_json(raw: bytes) -> tuple[ExecutionRequest, Path]:
    data = json.loads(raw)
    output = Path(data.pop("output"))
    data["notebook"] = base64.b64decode(data["notebook"])
    data["parameters"] = NotebookParameters.from_json(data["parameters"])
    data["output_names"] = tuple(data["output_names"])
    return ExecutionRequest(**data), output


class _EventListener:
    """Writes the run's events. ``warm`` and ``warm_seconds``: the kernel started ahead and how long that
    took; a kernel started for the request (cold) took the time from the request to ``kernel_started``.

    Cell output is sent as ``{"event": "output", "cell", "name", "text", "chars"}`` at most every
    ``OUTPUT_INTERVAL`` seconds per stream: ``text`` is the last ``TAIL_CHARS`` of what was written since
    the last event and ``chars`` how much that was, so a flood costs neither memory nor events."""

    def __init__(self, stream: IO[str], warm: WarmKernel | None = None, warm_seconds: float = 0.0) -> None:
        self.stream = stream
        self.stop_requested = False
        self.warm = warm
        self.warm_seconds = warm_seconds
        self.created = time.monotonic()
        self._lock = threading.Lock()  # the stream's writes and the pending output
        self._pending: dict[tuple[int, str], tuple[str, int]] = {}
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()

    def should_stop(self) -> bool:
        return self.stop_requested

    def emit(self, **event: Any) -> None:
        with self._lock:
            self.stream.write(json.dumps(event) + "\n")
            self.stream.flush()

    def output(self, cell_index: int, name: str, text: str) -> None:
        if not text:
            return
        with self._lock:
            kept, chars = self._pending.get((cell_index, name), ("", 0))
            self._pending[(cell_index, name)] = ((kept + text[-TAIL_CHARS:])[-TAIL_CHARS:], chars + len(text))
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_every, name="nbjobs-output", daemon=True)
            self._flusher.start()

    def cell_ended(self, cell_index: int, ok: bool) -> None:
        self.flush_output()
        self.emit(event="cell", cell=cell_index, ok=ok)

    def flush_output(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            for (cell, name), (text, chars) in pending.items():
                event = {"event": "output", "cell": cell, "name": name, "text": text, "chars": chars}
                self.stream.write(json.dumps(event) + "\n")
            if pending:
                self.stream.flush()

    def close(self) -> None:
        self._closed.set()
        self.flush_output()

    def _flush_every(self) -> None:
        while not self._closed.wait(OUTPUT_INTERVAL):
            self.flush_output()

    def kernel_started(self, pid: int) -> None:
        warm = self.warm is not None and self.warm.pid == pid  # the job may not use the warm one
        seconds = self.warm_seconds if warm else time.monotonic() - self.created
        self.emit(event="kernel", pid=pid, seconds=round(seconds, 4), warm=warm)

    def progress(self, percent: int, message: str, cell_index: int, code_cells: int = 0) -> None:
        self.flush_output()
        self.emit(event="progress", percent=percent, message=message, cell=cell_index, cells=code_cells)


def _die_with_parent(parent_pid: int) -> None:
    """End this runner when the supervisor dies, so a killed server leaves no runner.

    A runner the supervisor started is its child: Linux SIGKILLs it then (PR_SET_PDEATHSIG). A runner
    forked by the runner template is the template's child, and must outlive a template that dies: it
    watches the supervisor through a pidfd instead."""
    if os.getppid() != parent_pid:
        _watch_supervisor(parent_pid)
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the kernel's parent poller still ends the kernel
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _watch_supervisor(supervisor_pid: int) -> None:
    try:
        pidfd = os.pidfd_open(supervisor_pid)
    except OSError:  # gone already (or no pidfds): nobody is left to give us a job
        os._exit(1)

    def watch() -> None:
        select.select([pidfd], [], [])
        os._exit(1)  # the kernel watches us and follows

    threading.Thread(target=watch, name="nbjobs-supervisor-watch", daemon=True).start()


def outcome_event(outcome: Outcome, runner_start: str = "spawn") -> dict[str, Any]:
    return {
        "event": "done",
        "failure": outcome.failure.to_wire() if outcome.failure else None,
        "cells_executed": outcome.cells_executed,
        "cpu_seconds": outcome.cpu_seconds,
        "output_truncated": outcome.output_truncated,
        "truncated_cells": outcome.truncated_cells,
        "has_output": outcome.notebook is not None,
        "values": outcome.values,
        "warnings": outcome.warnings,
        "start_method": outcome.start_method,
        "runner_start_method": runner_start,
    }


def _wait_for_request(warm: WarmKernel | None) -> bytes:
    """Block until the supervisor writes a request; exit if our warm kernel dies meanwhile."""
    stdin = sys.stdin.buffer
    while True:
        readable, _, _ = select.select([stdin], [], [], 1.0)
        if readable:
            return stdin.read()
        if warm is not None and not warm.alive():
            warm.discard()
            os._exit(3)  # the pool sees a dead runner and replaces it; no job gets this kernel


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="nbjobs-runner")
    args.add_argument("--kernel", default="", help="start this kernel now, before the request arrives")
    args.add_argument("--stream-cap", type=int, default=0, help="per-cell stdout/stderr cap to install now")
    args.add_argument("--run-as", default="", help="OS user the kernel runs as")
    args.add_argument("--fork-socket", default="", help="fork the kernel from the template listening here")
    args.add_argument("--fork-fallback", default="", help="why the kernel is spawned although fork was asked")
    options = args.parse_args(argv)
    start = StartMethod(options.fork_socket, options.fork_fallback)
    parent = int(os.environ.pop("NBJOBS_SUPERVISOR_PID", "0"))
    runner_start = "fork" if parent and os.getppid() != parent else "spawn"  # forked: the template's child
    if parent:
        _die_with_parent(parent)
    # Events get a private copy of stdout; fds 1 and 2 then point at this runner's log, so the kernel
    # (which inherits them) and anything it spawns can never write into the event stream or hold it open.
    events = os.fdopen(os.dup(1), "w", encoding="utf-8")
    log_fd = os.open(f"runner-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)

    warm = None
    warm_seconds = 0.0
    if options.kernel and kernel_exists(options.kernel):
        try:
            began = time.monotonic()
            warm = WarmKernel.start(
                options.kernel, os.getcwd(), dict(os.environ), options.stream_cap, options.run_as, start
            )
            warm_seconds = time.monotonic() - began
            # the pool prefers ready runners; the file names the kernel (a forked one is not our child)
            ready = Path(f"runner-{os.getpid()}.ready.tmp")
            ready.write_text(f"{warm.pid} {warm.start_method}")
            ready.replace(ready.with_suffix(""))
        except Exception as exc:  # the job will try a cold start and report what fails
            print(f"warm kernel {options.kernel!r} did not start: {exc}", file=sys.stderr)
    raw = _wait_for_request(warm)
    if not raw:  # retired without a job
        if warm is not None:
            warm.discard()
        return 0
    request, output = request_from_json(raw)
    listener = _EventListener(events, warm, warm_seconds)
    signal.signal(signal.SIGUSR1, lambda *_: setattr(listener, "stop_requested", True))
    outcome = execute(request, listener, warm)
    listener.close()
    if outcome.notebook is not None:
        tmp = output.with_suffix(".tmp")
        tmp.write_bytes(outcome.notebook)
        tmp.replace(output)
    listener.emit(**outcome_event(outcome, runner_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
