"""The template process: ``python -m nbjobs.execution.fork.template [--preload mod1,mod2]``.

It pays the identical, expensive part of every kernel start once (importing ipykernel, IPython and
the runtime's preload modules), proves that forking it is safe, and then forks one fresh kernel per
request. It never runs user code and keeps nothing of one request once it has forked.

Protocol (JSON lines): first line on stdout ``{"ready": true, "pid": N, "site": [...]}`` or
``{"ready": false, "error": "import"|"thread"|"zmq"|"asyncio", "module": M, "reason": R}``; then each
request line on stdin gets one reply line, ``{"pid": N}`` or ``{"error": R}`` (``{"ping": true}`` gets
``{"pong": N}``: the owner's health check). EOF on stdin ends the template; the kernels it forked live
on (each dies with the runner it watches).

With ``--listen PATH`` it also accepts fork requests on a Unix socket there (in a directory only its
owner can enter): one request line per connection, optionally with the runner's log fd passed along
(SCM_RIGHTS), one reply line. Only a peer running as the template's own user is answered. This is how
a job's runner asks for its kernel; the owner (the supervisor) keeps the stdin pipe.

``--runners`` makes it a *runner* template instead (nbjobs' own interpreter, preloading the job
runner and nbclient rather than ipykernel): a request ``{"runner": {"argv", "cwd", "env"}}`` on the
socket passes the runner's stdin and stdout (SCM_RIGHTS) and is answered ``{"pid": N}`` with a pidfd of
the child; the connection then stays open until the runner exits, when the template sends
``{"exit": CODE}`` (``Popen.returncode``'s convention: -N for a signal) and hangs up.

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
import select
import selectors
import signal
import socket
import sys
import sysconfig
import threading
from typing import Any

from nbjobs.execution.fork import child, probe

# The modules every kernel imports: paid here once.
BASE_MODULES = ("ipykernel.kernelapp", "ipykernel.ipkernel", "IPython")

# Native libraries that start threads at import: BLAS and OpenMP pools (numpy's OpenBLAS does), and the
# jemalloc that pyarrow (so pandas 3) loads, with its background purging thread. A template with them
# cannot fork safely, so it sets them to none unless the caller chose otherwise.
FORK_SAFE_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}


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


# A fork request from a runner carries at most this much JSON (its environment is most of it).
MAX_REQUEST = 1 << 20
SOCKET_TIMEOUT = 5.0  # a peer that connects and says nothing does not hold the template up longer


class Template:
    """The serving loop: read a request, fork, reply; reap children as they exit.

    Children are reaped in the loop, not in the SIGCHLD handler: the handler only wakes the loop (a
    byte on ``wakeup``), so that a runner's exit report is never written while another reply is."""

    def __init__(
        self, owners: list[Any], listener: socket.socket | None = None, runners: bool = False
    ) -> None:
        self.owners = owners
        self.listener = listener
        self.runners = runners  # a runner template: it forks job runners, not kernels
        self.pending = b""
        self.watchers: dict[int, socket.socket] = {}  # runner pid -> the connection told of its exit
        self.wakeup = -1

    def reap(self) -> None:
        """Collect every exited child, so none is left a zombie; tell a runner's owner how it ended."""
        if self.wakeup >= 0:
            with contextlib.suppress(OSError):
                while os.read(self.wakeup, 4096):
                    pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            peer = self.watchers.pop(pid, None)
            if peer is not None:
                with contextlib.suppress(OSError):
                    send_line(peer, {"exit": os.waitstatus_to_exitcode(status)})
                peer.close()

    def read_request(self) -> bytes | None:
        while b"\n" not in self.pending:
            chunk = os.read(0, 65536)
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line

    def serve(self) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        self.wakeup = wake_read
        signal.set_wakeup_fd(wake_write)  # SIGCHLD writes here: select wakes and the loop reaps
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.reap()  # a child that ended before the handler was in place
        watched = [0, wake_read] if self.listener is None else [0, wake_read, self.listener.fileno()]
        while True:
            if b"\n" not in self.pending:
                readable, _, _ = select.select(watched, [], [])
                if wake_read in readable:
                    self.reap()
                if self.listener is not None and self.listener.fileno() in readable:
                    self.answer_peer()
                if 0 not in readable:
                    continue
            line = self.read_request()
            if line is None:
                self.drain()
                return 0
            if line.strip():
                write_line(self.handle(line))
            del line

    def handle(
        self, line: bytes, log_fd: int = -1, peer: socket.socket | None = None, fds: list[int] | None = None
    ) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if request.get("ping"):
                return {"pong": os.getpid()}
            if self.runners:
                if peer is None or "runner" not in request:
                    return {"error": "a runner template forks runners, asked on its socket"}
                return self.fork_runner(request["runner"], fds or [], peer)
            return self.fork(request, log_fd=log_fd, peer=peer)
        except Exception as exc:  # a malformed request must not end the template
            return {"error": f"bad fork request: {exc!r}"}

    def drain(self) -> None:
        """Stopping: answer the runners whose requests are already queued, so none is dropped."""
        if self.listener is None:
            return
        self.listener.setblocking(False)
        while True:
            readable, _, _ = select.select([self.listener.fileno()], [], [], 0)
            if not readable:
                return
            self.answer_peer()

    def answer_peer(self) -> None:
        """One runner's request on the socket: read it (and the fd it passes), fork, reply, hang up."""
        assert self.listener is not None
        try:
            peer, _ = self.listener.accept()
        except OSError:  # BlockingIOError while draining: nobody left
            return
        fds: list[int] = []
        kept = False
        try:
            peer.settimeout(SOCKET_TIMEOUT)
            uid = struct_ucred_uid(peer)
            if uid != os.getuid():
                send_line(peer, {"error": f"fork requests are answered for uid {os.getuid()} only"})
                return
            data = b""
            while b"\n" not in data and len(data) < MAX_REQUEST:
                chunk, received, _flags, _addr = socket.recv_fds(peer, 65536, 2)
                fds += received
                if not chunk:
                    break
                data += chunk
            if b"\n" not in data:
                send_line(peer, {"error": "incomplete fork request"})
                return
            line = data.split(b"\n", 1)[0]
            del data
            reply = self.handle(line, log_fd=fds[0] if fds else -1, peer=peer, fds=fds)
            pidfd = reply.pop("pidfd", -1)
            try:
                socket.send_fds(peer, [(json.dumps(reply) + "\n").encode()], [pidfd] if pidfd >= 0 else [])
            finally:
                if pidfd >= 0:
                    os.close(pidfd)
            if "pid" in reply and self.runners:
                self.watchers[int(reply["pid"])] = peer  # told of the runner's exit, then closed
                kept = True
        except OSError as exc:  # the runner gave up or went away; it falls back to a stock start
            os.write(2, f"fork template: a request failed: {exc!r}\n".encode())
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if not kept:
                peer.close()

    def fork(
        self, request: dict[str, Any], log_fd: int = -1, peer: socket.socket | None = None
    ) -> dict[str, Any]:
        threads = os_threads()
        if len(threads) != 1:  # never fork with a second thread (none should ever appear)
            return {"error": f"template has threads {threads}; not forking"}
        argv = request.pop("argv", None)
        if argv is not None:
            problem, extra = kernel_arguments([str(a) for a in argv])
            if problem:
                return {"error": problem, "unforkable": True}
            request["extra_args"] = extra
        spec = child.ForkSpec.from_json(request)
        read_end, write_end = os.pipe()  # the child reports set-up failures here; EOF means ready
        pid = os.fork()
        if pid == 0:  # the child: never returns into this loop
            os.close(read_end)
            self.pending = b""  # bytes of later requests are not this child's business
            owners = [*self.owners, *([peer] if peer is not None else [])]
            child.run_kernel(spec, status_fd=write_end, owners=owners, log_fd=log_fd)
        os.close(write_end)
        del request, spec
        failure = _read_all(read_end)
        if failure:
            return {"error": failure.decode(errors="replace"), "pid": pid}
        return {"pid": pid}

    def fork_runner(self, request: dict[str, Any], fds: list[int], peer: socket.socket) -> dict[str, Any]:
        """Fork one job runner on the stdin and stdout ``fds`` its owner passed; its pid and a pidfd."""
        threads = os_threads()
        if len(threads) != 1:
            return {"error": f"template has threads {threads}; not forking"}
        if len(fds) != 2:
            return {"error": f"a runner request passes its stdin and stdout, not {len(fds)} fds"}
        spec = child.RunnerSpec.from_json(request)
        pid = os.fork()
        if pid == 0:  # the child: never returns into this loop
            self.pending = b""
            owners = [*self.owners, *self.watchers.values(), peer]
            child.run_runner(spec, stdin=fds[0], stdout=fds[1], owners=owners)
        # a pidfd opened before any reap (the loop reaps, not the signal handler): it is this child
        return {"pid": pid, "pidfd": os.pidfd_open(pid)}


def kernel_arguments(argv: list[str]) -> tuple[str, tuple[str, ...]]:
    """("", the kernel's extra arguments) when ``argv`` starts an IPython kernel of this interpreter
    (``PYTHON -m ipykernel_launcher -f CONNECTION_FILE ...``), else (why it cannot be forked, ())."""
    if len(argv) < 3 or argv[1:3] != ["-m", "ipykernel_launcher"]:
        return f"the kernel command {argv[:3]} is not 'python -m ipykernel_launcher'", ()
    # Paths as given, not resolved: a virtual environment's python is a symlink to its base interpreter,
    # and what makes it that environment is the path it was started by.
    if os.path.abspath(argv[0]) != os.path.abspath(sys.executable):
        return f"the kernel's interpreter {argv[0]} is not the template's ({sys.executable})", ()
    rest, extra = argv[3:], []
    while rest:
        arg = rest.pop(0)
        if arg in ("-f", "--f"):
            rest = rest[1:]  # the connection file comes in the request itself
        elif arg.startswith(("-f=", "--f=")):
            continue
        else:
            extra.append(arg)
    return "", tuple(extra)


def struct_ucred_uid(peer: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED: pid, uid, gid)."""
    import struct

    creds = peer.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def send_line(peer: socket.socket, message: dict[str, Any]) -> None:
    peer.sendall((json.dumps(message) + "\n").encode())


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


def _warm_runner_caches() -> dict[str, Any] | None:
    """Pay once what every runner would otherwise pay at its start (measured: ~110 ms of a forked
    runner's 130): the kernel provisioners' entry points (a scan of every installed distribution's
    metadata), the kernelspec lookup of the native kernel (which imports ipykernel and IPython), the
    ready client jupyter_client loads by name, and nbformat's compiled schema validator."""
    try:
        from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager
        from jupyter_client.provisioning import KernelProvisionerFactory
        from nbformat.v4 import new_notebook

        KernelProvisionerFactory.instance()  # the singleton every kernel manager asks
        KernelSpecManager().get_kernel_spec(NATIVE_KERNEL_NAME)
        importlib.import_module("jupyter_client.provisioning.local_provisioner")
        importlib.import_module("nbjobs.execution.ready_client")
        new_notebook()  # validates: compiles the schema once
    except Exception as exc:  # only a cache: a runner does all of it itself
        os.write(2, f"fork template: runner caches not warmed: {exc!r}\n".encode())
    return import_checked([]) or _threads_after("the runner's caches") or fork_hazards()


def site_dirs() -> list[str]:
    """Where this interpreter's packages live: a package installed or upgraded there changes the
    directory, which is how the owner notices that the environment changed under the template."""
    paths = sysconfig.get_paths()
    return sorted({paths[k] for k in ("purelib", "platlib") if k in paths})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbjobs-fork-template")
    parser.add_argument("--preload", default="", help="comma-separated modules to import once")
    parser.add_argument("--no-probe", action="store_true", help="do not pre-import a kernel's start-up set")
    parser.add_argument("--listen", default="", help="also take fork requests on a Unix socket at this path")
    parser.add_argument("--runners", action="store_true", help="fork job runners (the preload is the runner)")
    options = parser.parse_args(argv)
    # As ipykernel_launcher does: the start directory is not on the kernel's path (IPython adds '').
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    for name, value in FORK_SAFE_ENV.items():
        os.environ.setdefault(name, value)
    inherited = open_fds()  # the client gives us 0/1/2 only; anything else is closed now
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    preload = [m.strip() for m in options.preload.split(",") if m.strip()]
    # numpy loads numpy.random lazily: import it here, so its global RandomState is the template's
    # (and the child reseeds it) rather than a first import in each child.
    refusal = import_checked([*(() if options.runners else BASE_MODULES), *preload])
    if refusal is None and "numpy" in sys.modules:
        refusal = import_checked(["numpy.random"])
    if refusal is None and options.runners:
        refusal = _warm_runner_caches()
    if refusal is None and not options.no_probe and not options.runners:
        probe.import_all(probe.kernel_modules(child.DEFAULT_EXTRA_ARGS))
        refusal = import_checked([]) or _threads_after("the kernel's start-up modules")
    refusal = refusal or fork_hazards()
    if refusal is not None:
        write_line({**refusal, "site": site_dirs()})
        return 1
    listener = None
    if options.listen:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(options.listen)
        listener.listen(128)
    owners = fd_owners(open_fds())
    gc.collect()
    gc.freeze()  # the template's objects stay out of the children's collections: fewer pages copied
    write_line({"ready": True, "pid": os.getpid(), "preload": preload, "site": site_dirs()})
    code = Template(owners, listener, runners=options.runners).serve()
    os._exit(code)  # no interpreter shutdown: preloads' finalizers and atexit hooks are not ours to run


if __name__ == "__main__":
    sys.exit(main())
