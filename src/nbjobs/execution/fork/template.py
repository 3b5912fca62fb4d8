"""The template process: ``python -m nbjobs.execution.fork.template [--preload mod1,mod2]``.

It pays the identical, expensive part of every kernel start once (importing ipykernel, IPython and
the runtime's preload modules), proves that forking it is safe, and then forks one fresh kernel per
request. It never runs user code and keeps nothing of one request once it has forked.

Protocol (JSON lines): first line on stdout ``{"ready": true, "pid": N}`` or ``{"ready": false,
"error": "import"|"thread"|"zmq"|"asyncio", "module": M, "reason": R}``; then each request line on
stdin gets one reply line, ``{"pid": N}`` or ``{"error": R}``. EOF on stdin ends the template; the
kernels it forked live on (each dies with the runner it watches).

Why it is safe to fork here (see ``docs/performance.md``):
- one OS thread only (checked after every import and before every fork): no lock held by a thread
  that the child would not have, and no fork-with-threads DeprecationWarning (Python >= 3.12);
- no ZMQ context and no running asyncio loop: the child creates its own after the fork;
- stdin/stdout are used through raw ``os.read``/``os.write`` only, so no buffered bytes of other
  requests are copied into a child, and nothing buffered is written twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import io
import json
import os
import selectors
import signal
import socket
import sys
import threading
from typing import Any

from nbjobs.execution.fork import child, probe

# The modules every kernel imports: paid here once.
BASE_MODULES = ("ipykernel.kernelapp", "ipykernel.ipkernel", "IPython")

# BLAS and OpenMP pools start native threads at import (numpy's OpenBLAS does on import); a template
# with them cannot fork safely, so it pins them to one thread unless the caller chose otherwise.
SINGLE_THREAD_POOLS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def os_threads() -> list[str]:
    """The names of this process's OS threads (Python's and native ones alike)."""
    names = []
    for tid in sorted(os.listdir("/proc/self/task")):
        try:
            with open(f"/proc/self/task/{tid}/comm") as comm:
                names.append(comm.read().strip())
        except OSError:
            continue
    return names


def _refusal(error: str, module: str, reason: str) -> dict[str, Any]:
    return {"ready": False, "error": error, "module": module, "reason": reason}


def import_checked(modules: list[str]) -> dict[str, Any] | None:
    """Import ``modules`` in order; the refusal naming the first that fails or leaves a thread."""
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # a preload may raise anything, SystemExit included
            return _refusal("import", name, f"preload module {name!r} failed to import: {exc!r}")
        extra = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        threads = os_threads()
        if extra or len(threads) > 1:
            named = ", ".join(extra or threads[1:])
            return _refusal(
                "thread",
                name,
                f"module {name!r} starts a thread at import ({named}); a process with threads cannot be "
                "forked safely, so this runtime cannot use fork mode",
            )
        hazard = fork_hazards(name)
        if hazard is not None:
            return hazard
    return None


def _threads_after(what: str) -> dict[str, Any] | None:
    threads = os_threads()
    if len(threads) > 1:
        return _refusal("thread", "", f"importing {what} started threads ({', '.join(threads[1:])})")
    return None


def fork_hazards(module: str = "") -> dict[str, Any] | None:
    """A refusal if a ZMQ context or a running asyncio loop exists (the child must make its own)."""
    by = f"module {module!r} created" if module else "there is"
    zmq = sys.modules.get("zmq")
    if zmq is not None:
        contexts = [o for o in gc.get_objects() if isinstance(o, zmq.Context)]
        if contexts or getattr(zmq.Context, "_instance", None) is not None:
            reason = f"{by} a ZMQ context before the fork; libzmq does not survive a fork"
            return _refusal("zmq", module, reason)
    if asyncio._get_running_loop() is not None:
        return _refusal("asyncio", module, f"{by} a running asyncio event loop; it cannot be forked")
    return None


def fd_owners(fds: set[int]) -> list[Any]:
    """Python objects (files, sockets, selectors) that own one of ``fds``: the child neutralises them,
    so that none closes its old fd number later, when that number is one of the kernel's own."""
    owners = []
    for obj in gc.get_objects():
        if isinstance(obj, io.IOBase | socket.socket | selectors.BaseSelector):
            with contextlib.suppress(Exception):
                fileno = obj.fileno() if not isinstance(obj, selectors.BaseSelector) else _selector_fd(obj)
                if fileno in fds:
                    owners.append(obj)
    return owners


def _selector_fd(selector: selectors.BaseSelector) -> int:
    fileno = getattr(selector, "fileno", None)
    return int(fileno()) if callable(fileno) else -1


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")} - {0, 1, 2}


class Template:
    """The serving loop: read a request, fork, reply; reap children as they exit."""

    def __init__(self, owners: list[Any]) -> None:
        self.owners = owners
        self.pending = b""

    def reap(self, *_: object) -> None:
        """SIGCHLD: collect every exited child, so none is left a zombie."""
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def read_request(self) -> bytes | None:
        while b"\n" not in self.pending:
            chunk = os.read(0, 65536)
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line

    def serve(self) -> int:
        signal.signal(signal.SIGCHLD, self.reap)
        while (line := self.read_request()) is not None:
            if not line.strip():
                continue
            try:
                reply = self.fork(json.loads(line))
            except Exception as exc:  # a malformed request must not end the template
                reply = {"error": f"bad fork request: {exc!r}"}
            del line
            write_line(reply)
        return 0

    def fork(self, request: dict[str, Any]) -> dict[str, Any]:
        threads = os_threads()
        if len(threads) != 1:  # never fork with a second thread (none should ever appear)
            return {"error": f"template has threads {threads}; not forking"}
        spec = child.ForkSpec.from_json(request)
        read_end, write_end = os.pipe()  # the child reports set-up failures here; EOF means ready
        pid = os.fork()
        if pid == 0:  # the child: never returns into this loop
            os.close(read_end)
            self.pending = b""  # bytes of later requests are not this child's business
            child.run_kernel(spec, status_fd=write_end, owners=self.owners)
        os.close(write_end)
        del request, spec
        failure = _read_all(read_end)
        if failure:
            return {"error": failure.decode(errors="replace"), "pid": pid}
        return {"pid": pid}


def _read_all(fd: int) -> bytes:
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    return data


def write_line(message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(1, data) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbjobs-fork-template")
    parser.add_argument("--preload", default="", help="comma-separated modules to import once")
    parser.add_argument("--no-probe", action="store_true", help="do not pre-import a kernel's start-up set")
    options = parser.parse_args(argv)
    # As ipykernel_launcher does: the start directory is not on the kernel's path (IPython adds '').
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    for name in SINGLE_THREAD_POOLS:
        os.environ.setdefault(name, "1")
    inherited = open_fds()  # the client gives us 0/1/2 only; anything else is closed now
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    preload = [m.strip() for m in options.preload.split(",") if m.strip()]
    # numpy loads numpy.random lazily: import it here, so its global RandomState is the template's
    # (and the child reseeds it) rather than a first import in each child.
    refusal = import_checked([*BASE_MODULES, *preload])
    if refusal is None and "numpy" in sys.modules:
        refusal = import_checked(["numpy.random"])
    if refusal is None and not options.no_probe:
        probe.import_all(probe.kernel_modules(child.DEFAULT_EXTRA_ARGS))
        refusal = import_checked([]) or _threads_after("the kernel's start-up modules")
    refusal = refusal or fork_hazards()
    if refusal is not None:
        write_line(refusal)
        return 1
    owners = fd_owners(open_fds())
    gc.collect()
    gc.freeze()  # the template's objects stay out of the children's collections: fewer pages copied
    write_line({"ready": True, "pid": os.getpid(), "preload": preload})
    code = Template(owners).serve()
    os._exit(code)  # no interpreter shutdown: preloads' finalizers and atexit hooks are not ours to run


if __name__ == "__main__":
    sys.exit(main())
