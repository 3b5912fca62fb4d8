"""What a child forked from a template does to become an ordinary, fresh kernel (or job runner).

Order matters: leave the template's session first; join the job's cgroup and copy the connection
file while still privileged; drop to the job's user before touching any path the job controls (the
log, the working directory); replace the environment; close every fd inherited from the template;
reseed every random source; only then create ZMQ contexts, the event loop and threads (ipykernel does,
in ``IPKernelApp.initialize``/``start``), exactly as ``ipykernel_launcher`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import os
import random
import select
import signal
import socket
import sys
import threading
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nbjobs.execution.dropuser import hand_over_connection_file

# As kernels.py starts an IPython kernel (and nbclient does): no history database to open.
DEFAULT_EXTRA_ARGS = ("--HistoryManager.hist_file=:memory:",)


@dataclass(frozen=True)
class ForkSpec:
    """One fork request: everything that makes the child this job's kernel and no other's."""

    connection_file: str
    cwd: str
    env: dict[str, str]
    log_path: str
    parent_pid: int = 0  # the runner: the kernel exits when it does (JPY_PARENT_PID semantics)
    uid: int | None = None
    gid: int | None = None
    cgroups: tuple[str, ...] = ()  # cgroup directories to join (v2: one; v1: one per hierarchy)
    extra_args: tuple[str, ...] = DEFAULT_EXTRA_ARGS
    rlimit_as: int = 0  # RLIMIT_AS in bytes where no cgroup is available (0: none)

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["cgroups"], data["extra_args"] = list(self.cgroups), list(self.extra_args)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ForkSpec:
        cgroups = data.get("cgroups") or data.get("cgroup") or ()
        return cls(
            connection_file=str(data["connection_file"]),
            cwd=str(data["cwd"]),
            env={str(k): str(v) for k, v in dict(data["env"]).items()},
            log_path=str(data["log_path"]),
            parent_pid=int(data.get("parent_pid") or 0),
            uid=None if data.get("uid") is None else int(data["uid"]),
            gid=None if data.get("gid") is None else int(data["gid"]),
            cgroups=(cgroups,) if isinstance(cgroups, str) else tuple(cgroups),
            extra_args=tuple(data.get("extra_args", DEFAULT_EXTRA_ARGS)),
            rlimit_as=int(data.get("rlimit_as") or 0),
        )


@dataclass(frozen=True)
class RunnerSpec:
    """One runner fork request: what ``Popen([python, -m, nbjobs.execution.runner, *argv])`` is given."""

    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "cwd": self.cwd, "env": dict(self.env)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunnerSpec:
        return cls(
            argv=tuple(str(a) for a in data["argv"]),
            cwd=str(data["cwd"]),
            env={str(k): str(v) for k, v in dict(data["env"]).items()},
        )


def run_runner(spec: RunnerSpec, stdin: int, stdout: int, owners: Sequence[Any]) -> None:
    """A forked job runner's whole life: become what ``Popen`` would have started (its own session,
    the given stdin/stdout, working directory and environment, no fd or seed of the template), then
    run ``nbjobs.execution.runner.main`` and exit with its status. stderr stays the template's log
    until the runner points it at its own."""
    code = 70
    try:
        _reset_signals()
        os.setsid()
        _reseed()
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        os.chdir(spec.cwd)
        template_path = os.environ.get("PYTHONPATH", "")
        os.environ.clear()
        os.environ.update(spec.env)
        _swap_pythonpath(template_path, spec.env.get("PYTHONPATH", ""))
        _fresh_warnings(spec.env.get("PYTHONWARNINGS", ""))
        threading._counter = itertools.count(1).__next__  # type: ignore[attr-defined]
        _close_inherited(keep={0, 1, 2}, owners=owners)
        from nbjobs.execution import runner

        sys.argv = [runner.__file__, *spec.argv]
        code = runner.main(list(spec.argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reset_signals() -> None:
    """The template's signal set-up is not the child's: default handlers, no wakeup fd."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_kernel(spec: ForkSpec, status_fd: int, owners: Sequence[Any], log_fd: int = -1) -> None:
    """The child's whole life: set up, tell the template (by closing ``status_fd``), run the kernel.

    ``log_fd``: the runner's log, passed with the request; the kernel writes stdout/stderr there, as a
    stock kernel inherits the runner's (else ``spec.log_path`` is opened as the job's user)."""
    try:
        connection_file = _become_the_job(spec, status_fd, owners, log_fd)
        watch = _watch_parent(spec.parent_pid)
        os.close(status_fd)  # EOF: the template replies with our pid
    except BaseException:
        with contextlib.suppress(Exception):
            os.write(status_fd, traceback.format_exc().encode())
        os._exit(70)
    code = 1
    try:
        code = _launch(connection_file, spec, watch)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _become_the_job(spec: ForkSpec, status_fd: int, owners: Sequence[Any], log_fd: int = -1) -> str:
    _reset_signals()  # the template's, not the kernel's
    os.setsid()  # its own session and process group: the runner kills the tree by the kernel's pid
    _reseed()  # first: it may import (numpy.random needs ``secrets``) what the job's user cannot read
    for group in spec.cgroups:
        with open(os.path.join(group, "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    if spec.rlimit_as:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (spec.rlimit_as, spec.rlimit_as))
    connection_file = spec.connection_file
    env = dict(spec.env)
    if spec.uid is not None and spec.uid != os.getuid():
        connection_file = hand_over_connection_file(connection_file, spec.uid, spec.gid)
        env.update(_user_env(spec.uid, os.path.dirname(connection_file)))  # as dropuser sets them
    if spec.gid is not None:
        os.setgroups([])
        os.setgid(spec.gid)
    if spec.uid is not None:
        os.setuid(spec.uid)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    log = log_fd if log_fd >= 0 else os.open(spec.log_path, flags, 0o600)  # as the job's user
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(spec.cwd)
    template_path = os.environ.get("PYTHONPATH", "")
    os.environ.clear()
    os.environ.update(env)
    _swap_pythonpath(template_path, env.get("PYTHONPATH", ""))
    _fresh_warnings(env.get("PYTHONWARNINGS", ""))
    threading._counter = itertools.count(1).__next__  # type: ignore[attr-defined]  # names as in a new process
    _close_inherited(keep={0, 1, 2, status_fd}, owners=owners)
    return connection_file


def _user_env(uid: int, home: str) -> dict[str, str]:
    import pwd

    name = pwd.getpwuid(uid).pw_name
    return {"HOME": home, "USER": name, "LOGNAME": name}


def _fresh_warnings(pythonwarnings: str) -> None:
    """The warning filters of a new interpreter with the job's PYTHONWARNINGS, not the template's
    ``-W`` options (other interpreter flags, -O, -X, cannot change after start: the template is
    started with none)."""
    sys.warnoptions[:] = [w for w in pythonwarnings.split(",") if w]
    warnings.resetwarnings()
    if not sys.flags.dev_mode:
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category)
    warnings._processoptions(sys.warnoptions)  # type: ignore[attr-defined]


def _swap_pythonpath(template: str, job: str) -> None:
    """``sys.path`` as a stock kernel of this job has it: the job's PYTHONPATH, not the template's
    (modules already imported from the template's stay imported)."""
    ours = [p for p in job.split(os.pathsep) if p]
    theirs = {p for p in template.split(os.pathsep) if p} - set(ours)
    sys.path[:] = ours + [p for p in sys.path if p not in theirs and p not in ours]


def _close_inherited(keep: set[int], owners: Sequence[Any]) -> None:
    """Close every fd but ``keep``, then mark the Python objects that owned them closed, so that none
    closes (or flushes into) its old fd number later, when that number belongs to the kernel."""
    for fd in [int(fd) for fd in os.listdir("/proc/self/fd")]:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    for owner in owners:
        with contextlib.suppress(Exception):
            if isinstance(owner, socket.socket):
                owner.detach()
            else:
                owner.close()  # the flush fails on the closed fd (its bytes are the template's)
    # A loop object created (not running) in the template holds a closed selector: forget it.
    asyncio.set_event_loop_policy(None)


def _reseed() -> None:
    """Every source of pseudo-random numbers starts from fresh OS entropy, unlike the template's copy."""
    random.seed(int.from_bytes(os.urandom(32), "big"))
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(int.from_bytes(os.urandom(4), "big"))
    uuid = sys.modules.get("uuid")
    if uuid is not None and hasattr(uuid, "_last_timestamp"):  # uuid1()'s monotonic clock guard
        setattr(uuid, "_last_timestamp", None)  # noqa: B010 (private, untyped)


def _watch_parent(parent_pid: int) -> int:
    """A pidfd on the runner, opened now (a runner already gone ends the child here)."""
    if not parent_pid:
        return -1
    return os.pidfd_open(parent_pid)


def _launch(connection_file: str, spec: ForkSpec, watch: int) -> int:
    """Start the kernel as ``python -m ipykernel_launcher -f CONNECTION_FILE EXTRA...`` would."""
    from ipykernel.kernelapp import IPKernelApp
    from ipykernel.parentpoller import ParentPollerUnix

    class RunnerWatch(ParentPollerUnix):
        """ipykernel's parent poller (same thread, same place), watching the runner rather than our
        parent (the template): the runner is not our parent, so it waits on a pidfd instead."""

        def run(self) -> None:
            select.select([watch], [], [])
            os._exit(1)

    class ForkedKernelApp(IPKernelApp):
        def init_poller(self) -> None:
            self.poller = RunnerWatch(parent_pid=spec.parent_pid) if watch >= 0 else None

    launcher = importlib.util.find_spec("ipykernel_launcher")  # its path, not an import of it
    argv = ["-f", connection_file, *spec.extra_args]
    sys.argv = [launcher.origin if launcher and launcher.origin else "ipykernel_launcher", *argv]
    app = ForkedKernelApp.instance(parent_handle=spec.parent_pid)
    app.initialize(argv)
    app.start()
    return 0
