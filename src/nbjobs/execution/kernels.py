"""Starting kernels: the manager every job uses, and the warm kernel a spare runner holds ready.

Kernels talk over IPC sockets in a private temp dir, not loopback TCP: no port another local user
could reach, no ZMQ reconnect delay. The socket path must be absolute (runner and kernel have
different working directories) and short (a Unix socket path has 108 bytes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from jupyter_client.client import KernelClient
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager, KernelManager
from jupyter_core.utils import run_sync
from traitlets import Unicode

from nbjobs.execution.kernel_setup import stream_cap_code
from nbjobs.execution.processes import kill_process_tree

READY_CLIENT = "nbjobs.execution.ready_client.ReadyClient"


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
    """Starts the kernel through ``nbjobs.execution.dropuser`` when ``run_as`` names an OS user."""

    run_as = Unicode("")

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if not self.run_as:
            return cmd
        return [sys.executable, "-m", "nbjobs.execution.dropuser", self.run_as, "--", *cmd]


def new_kernel_manager(kernel_name: str, run_as: str = "") -> tuple[AsyncKernelManager, str]:
    """A kernel manager on IPC sockets, and the directory holding them (remove it when done)."""
    sockets = tempfile.mkdtemp(prefix="nbjobs-k-")
    km = RunAsKernelManager(
        kernel_name=kernel_name,
        transport="ipc",
        ip=os.path.join(sockets, "k"),
        client_class=READY_CLIENT,
        run_as=run_as,
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

    @classmethod
    def start(
        cls, kernel_name: str, cwd: str, env: Mapping[str, str], stream_cap: int = 0, run_as: str = ""
    ) -> WarmKernel:
        """Start ``kernel_name`` now, wait until both its channels answer, and pay its first-run costs.

        With ``stream_cap``, the per-cell output cap is installed now rather than when the job starts.
        """
        from nbclient import NotebookClient  # here, so that launch() needs jupyter_client only
        from nbformat.v4 import new_notebook

        km, sockets = new_kernel_manager(kernel_name, run_as)
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
