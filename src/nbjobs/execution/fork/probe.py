"""Learning, once, which modules a kernel imports while it starts, so the template imports them too.

The template imports ipykernel and IPython, but a kernel's ``initialize`` and first cell import ~2x
as many modules again (pdb, the completer, the display machinery...). Paid in every child, that is
most of a forked kernel's start; and a child that has dropped to an unprivileged user may not even be
allowed to read them (this project's interpreter lives under a 0700 home). So at start-up the
template forks one throw-away *probe* child that initialises a real kernel (its own ZMQ context,
threads and sockets; they die with it), runs an empty cell and reports ``sys.modules``. The template
then imports the same names itself; the usual thread/ZMQ/asyncio checks run afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time

PROBE_TIMEOUT = 60.0


def kernel_modules(extra_args: tuple[str, ...], timeout: float = PROBE_TIMEOUT) -> list[str]:
    """The module names a freshly started kernel has after one empty cell ([] if the probe fails)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _probe(write_end, extra_args)  # never returns
    os.close(write_end)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([read_end], [], [], left)
            if not readable:
                break
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    try:
        names = json.loads(data)
    except ValueError:
        return []
    return [str(name) for name in names]


def import_all(names: list[str]) -> None:
    """Import what the probe saw; a name that will not import by itself (an alias, a C helper) is
    skipped, since the kernel will then import it the way it did in the probe."""
    for name in names:
        if name in sys.modules or name.startswith("__") or name == "nbjobs.execution.fork.template":
            continue
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _probe(status_fd: int, extra_args: tuple[str, ...]) -> None:
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # never a byte into the template's protocol pipes
            os.dup2(devnull, fd)
        os.setsid()
        sockets = tempfile.mkdtemp(prefix="nbjobs-probe-")
        try:
            from ipykernel.kernelapp import IPKernelApp
            from jupyter_client.connect import write_connection_file

            connection_file, _ = write_connection_file(
                os.path.join(sockets, "c.json"), transport="ipc", ip=os.path.join(sockets, "k")
            )
            app = IPKernelApp.instance(parent_handle=0)
            app.initialize(["-f", connection_file, *extra_args])
            shell = getattr(app, "shell", None)
            if shell is not None:
                with contextlib.suppress(Exception):
                    shell.run_cell("pass", store_history=False, silent=True)
        finally:
            shutil.rmtree(sockets, ignore_errors=True)
        data = json.dumps(sorted(sys.modules)).encode()
        while data:
            data = data[os.write(status_fd, data) :]
    finally:
        os._exit(0)
