"""Starting kernels: the manager every job uses, and the warm kernel a spare runner holds ready.

Kernels talk over IPC sockets in a private temp dir, not loopback TCP: no port another local user
could reach, no ZMQ reconnect delay. The socket path must be absolute (runner and kernel have
different working directories) and short (a Unix socket path has 108 bytes).

A kernel is started one of two ways (``StartMethod``): *fork*, asking the runtime's fork template
(``fork/``) for a child of its pre-imported interpreter, or *spawn*, a new ``ipykernel_launcher``
process as Jupyter starts one. A fork that cannot be had falls back to spawn for that kernel, and the
manager says why (``fallback``), so the job's results can record it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jupyter_client.client import KernelClient
from jupyter_client.connect import port_names
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager, KernelManager
from jupyter_core.utils import run_sync
from traitlets import Unicode

from nbjobs.execution.fork.child import ForkSpec
from nbjobs.execution.fork.client import TemplateError, request_fork
from nbjobs.execution.kernel_setup import stream_cap_code
from nbjobs.execution.processes import ForkedProcess, kill_process_tree

READY_CLIENT = "nbjobs.execution.ready_client.ReadyClient"
FORK = "fork"
SPAWN = "spawn"
START_METHODS = (FORK, SPAWN)
DROPUSER = ["-m", "nbjobs.execution.dropuser"]


@dataclass(frozen=True)
class StartMethod:
    """How a runner starts its kernel: forked from the template listening at ``fork_socket``, or
    spawned (no socket). ``fallback``: why a kernel that should have been forked is spawned instead
    (the template refused or is not there); "" when spawn is what the runtime asked for."""

    fork_socket: str = ""
    fallback: str = ""
    generation: str = ""  # what made the kernel (template, environment); a pool drops other generations

    def arguments(self) -> list[str]:
        """The runner's command-line options that carry it."""
        args = ["--fork-socket", self.fork_socket] if self.fork_socket else []
        return args + (["--fork-fallback", self.fallback] if self.fallback else [])


def resolve_kernel_name(name: str) -> str:
    """The kernel a notebook's kernel name means, as jupyter_client's ``KernelManager`` reads it.

    ``python`` (nbclient's own test notebooks use it) is the Python 3 kernel of this environment.
    """
    return NATIVE_KERNEL_NAME if name == "python" else name


def kernel_exists(name: str) -> bool:
    """True when a kernelspec called ``name`` is installed."""
    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return False
    return True


class RunAsKernelManager(AsyncKernelManager):
    """Starts the kernel through ``nbjobs.execution.dropuser`` when ``run_as`` names an OS user, and
    from the fork template at ``fork_socket`` when there is one (falling back to that stock start)."""

    run_as = Unicode("")
    fork_socket = Unicode("")
    fallback = Unicode("")  # why this kernel was spawned although a fork was wanted ("" otherwise)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if not self.run_as:
            return cmd
        return [sys.executable, *DROPUSER, self.run_as, "--", *cmd]

    @property
    def start_method(self) -> str:
        return FORK if self.fork_socket and not self.fallback else SPAWN

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if self.fork_socket and not self.fallback:
            try:
                self._fork(kernel_cmd, kw)
                return
            except TemplateError as exc:
                self.fallback = exc.reason
                self.log.warning("starting the kernel the stock way: %s", exc.reason)
                self._fresh_endpoints()
        await super()._async_launch_kernel(kernel_cmd, **kw)

    def _fresh_endpoints(self) -> None:
        """New socket paths for the stock start that follows a failed fork request. The template may
        have forked a kernel all the same (it answered after our timeout, or died before its reply):
        that kernel binds the old paths, and two kernels on one job's sockets split its channels (a
        client's shell reaching one, its IOPub the other). The orphan dies with this runner, which it
        watches."""
        if self.transport != "ipc":
            return
        self.cleanup_connection_file()
        for name in port_names:
            setattr(self, name, 0)
        self.ip = os.path.join(os.path.dirname(self.ip), "s")  # k-1..k-5 were the fork's
        self.write_connection_file()  # same file name: the kernel command names it
        provisioner: Any = self.provisioner
        provisioner.connection_info = self.get_connection_info()

    def _fork(self, kernel_cmd: list[str], kw: dict[str, Any]) -> None:
        """Ask the template for the kernel ``kernel_cmd`` would start, with what Popen would be given."""
        argv = list(kernel_cmd)
        if argv[1:3] == DROPUSER:  # [python, -m, dropuser, USER, --, *cmd]: the child drops itself
            argv = argv[5:]
        uid = gid = None
        if self.run_as:
            account = pwd.getpwnam(self.run_as)
            uid, gid = account.pw_uid, account.pw_gid
        env = dict(kw.get("env") or os.environ)
        env["JPY_PARENT_PID"] = str(os.getpid())  # as jupyter_client's launcher sets it
        spec = ForkSpec(
            connection_file=self.connection_file,
            cwd=str(kw.get("cwd") or os.getcwd()),
            env=env,
            log_path="",
            parent_pid=os.getpid(),
            uid=uid,
            gid=gid,
        )
        pid = request_fork(self.fork_socket, spec, argv=argv, log_fd=sys.stderr.fileno())
        provisioner: Any = self.provisioner
        provisioner.process = ForkedProcess(pid)
        provisioner.pid = provisioner.pgid = pid  # its own session and process group
        provisioner.cwd = spec.cwd
        self._reconcile_connection_info(provisioner.connection_info)


def new_kernel_manager(
    kernel_name: str, run_as: str = "", start: StartMethod | None = None
) -> tuple[RunAsKernelManager, str]:
    """A kernel manager on IPC sockets, and the directory holding them (remove it when done)."""
    sockets = tempfile.mkdtemp(prefix="nbjobs-k-")
    start = start or StartMethod()
    km = RunAsKernelManager(
        kernel_name=kernel_name,
        transport="ipc",
        ip=os.path.join(sockets, "k"),
        client_class=READY_CLIENT,
        run_as=run_as,
        fork_socket=start.fork_socket,
        fallback=start.fallback,
    )
    return km, sockets


def kernel_pid(km: KernelManager | None) -> int:
    """The OS process id of the kernel ``km`` started, or 0 (none started)."""
    provisioner = getattr(km, "provisioner", None)
    pid = getattr(provisioner, "pid", None) or getattr(getattr(provisioner, "process", None), "pid", None)
    return int(pid or 0)


@dataclass
class WarmKernel:
    """A kernel started ahead of its job, with a connected, ready client (the pool's unit)."""

    kernel_name: str
    km: AsyncKernelManager
    kc: KernelClient
    sockets: str
    pid: int
    stream_cap: int = 0  # the per-cell stream cap already installed in the kernel (0: none)

    @property
    def start_method(self) -> str:
        return self.km.start_method if isinstance(self.km, RunAsKernelManager) else SPAWN

    @property
    def fallback(self) -> str:
        return self.km.fallback if isinstance(self.km, RunAsKernelManager) else ""

    @classmethod
    def start(
        cls,
        kernel_name: str,
        cwd: str,
        env: Mapping[str, str],
        stream_cap: int = 0,
        run_as: str = "",
        start: StartMethod | None = None,
    ) -> WarmKernel:
        """Start ``kernel_name`` now, wait until both its channels answer, and pay its first-run costs.

        With ``stream_cap``, the per-cell output cap is installed now rather than when the job starts.
        """
        from nbclient import NotebookClient  # here, so that launch() needs jupyter_client only
        from nbformat.v4 import new_notebook

        km, sockets = new_kernel_manager(kernel_name, run_as, start)
        starter = NotebookClient(new_notebook(), km=km, kernel_name=kernel_name)
        try:
            starter.start_new_kernel(cwd=cwd, env=dict(env))
            kc = starter.start_new_kernel_client()
            # The first execution in a fresh IPython costs ~10 ms more than later ones: spend it now.
            setup = stream_cap_code(stream_cap) if stream_cap else "pass"
            run_sync(starter.async_wait_for_reply)(kc.execute(setup, silent=True, store_history=False))
        except BaseException:
            kill_process_tree(kernel_pid(km))
            shutil.rmtree(sockets, ignore_errors=True)
            raise
        return cls(kernel_name, km, kc, sockets, kernel_pid(km), stream_cap)

    def alive(self) -> bool:
        try:
            return bool(run_sync(self.km.is_alive)())
        except Exception:
            return False

    def discard(self) -> None:
        """Kill the kernel, close the client's sockets and remove their files."""
        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        if self.pid:
            kill_process_tree(self.pid)
        process = getattr(self.km.provisioner, "process", None)
        if process is not None:  # reap it: a killed child left unwaited is a zombie
            with contextlib.suppress(Exception):
                process.wait(timeout=5)
        with contextlib.suppress(Exception):
            self.km.context.destroy(linger=0)
        shutil.rmtree(self.sockets, ignore_errors=True)


@dataclass
class StartingKernel:
    """A kernel process launched, not yet known to be ready: ``nbjobs run`` starts it first thing, so
    the kernel boots while the runner still imports nbclient and reads the notebook."""

    kernel_name: str
    km: AsyncKernelManager
    sockets: str

    @classmethod
    def launch(cls, kernel_name: str, cwd: str) -> StartingKernel:
        """Start the kernel process of ``kernel_name`` in ``cwd`` and return without waiting for it."""
        km, sockets = new_kernel_manager(kernel_name)
        # as nbclient starts an IPython kernel: no history database to open
        extra = ["--HistoryManager.hist_file=:memory:"] if km.ipykernel else []
        try:
            run_sync(km.start_kernel)(extra_arguments=extra, cwd=cwd)
        except BaseException:
            kill_process_tree(kernel_pid(km))
            shutil.rmtree(sockets, ignore_errors=True)
            raise
        return cls(kernel_name, km, sockets)

    def ready(self, timeout: float = 60) -> WarmKernel:
        """Connect a client and wait until both channels answer (exactly, see ``ReadyClient``)."""
        kc = self.km.client()
        warm = WarmKernel(self.kernel_name, self.km, kc, self.sockets, kernel_pid(self.km))
        try:
            kc.start_channels()
            run_sync(kc.wait_for_ready)(timeout=timeout)
        except BaseException:
            warm.discard()
            raise
        kc.allow_stdin = False
        return warm
