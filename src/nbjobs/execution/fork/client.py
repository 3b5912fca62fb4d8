"""The runner side of a fork template: start it, ask it for kernels, notice when it is gone.

``Template.start`` waits until the template has imported everything and proved it may fork, or
raises ``TemplateError`` with the template's own reason (a preload that does not import, one that
starts a thread). ``fork`` sends one request and returns the new kernel's pid; a dead template
raises ``TemplateError`` rather than hanging, so the caller can fall back to a stock start.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from nbjobs.execution.fork.child import ForkSpec

# What the template's own environment keeps of ours: enough to find Python and the packages, no
# secrets (every fork request carries the job's full environment anyway).
TEMPLATE_ENV = ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH")
TEMPLATE_ENV_PREFIXES = ("LC_", "OPENBLAS_", "OMP_", "MKL_", "JE_")


# How a template starts in an interpreter that is not ours (a runtime's own environment, where nbjobs is
# not installed): our package's directory goes on the path just long enough to import the template's
# module (stdlib-only, like the modules it imports), then off again, so the preloads and the kernels
# see the runtime's packages only.
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "import nbjobs.execution.fork.template as t; del sys.path[0]; sys.exit(t.main(sys.argv[1:]))"
)
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class TemplateError(RuntimeError):
    """The template refused, failed or is gone; ``reason`` says why in its words."""

    def __init__(self, reason: str, module: str = "", kind: str = "", site: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.site = site  # the interpreter's package directories, when the template got to report them
        self.module = module
        self.kind = kind  # import | thread | zmq | asyncio (refused at start) | unforkable | "" (gone, hung)

    @property
    def refused(self) -> bool:
        """The template said no for good reason (its preload, the kernel command): retrying is useless."""
        return self.kind in ("import", "thread", "zmq", "asyncio", "unforkable")


def template_env(source: Mapping[str, str] | None = None) -> dict[str, str]:
    source = os.environ if source is None else source
    return {k: v for k, v in source.items() if k in TEMPLATE_ENV or k.startswith(TEMPLATE_ENV_PREFIXES)}


class Template:
    """A running template process and the pipe pair to it (requests are serialised by a lock)."""

    def __init__(self, proc: subprocess.Popen[bytes], preload: tuple[str, ...], listen: str = "") -> None:
        self.proc = proc
        self.preload = preload
        self.pid = proc.pid
        self.listen = listen  # the Unix socket runners ask for kernels on ("": none)
        self.site: tuple[str, ...] = ()  # the interpreter's package directories, as the template reported
        self._pending = b""
        self._lock = threading.Lock()

    @classmethod
    def start(
        cls,
        preload: Iterable[str] = (),
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        python_options: Iterable[str] = (),
        log_path: str | None = None,
        listen: str = "",
        runners: bool = False,
    ) -> Template:
        """Start a template importing ``preload`` and wait until it is ready to fork.

        ``env``: the template's environment, filtered to ``TEMPLATE_ENV`` (no secrets); ``python_options``
        go before ``-m`` (e.g. ``-W error``); ``log_path``: the template's stderr (default: ours);
        ``listen``: a socket path (in a directory only we may enter) where runners ask for kernels;
        ``runners``: a runner template (``preload`` is then the runner's module; ``env`` is given as is:
        it is the runners' own, already free of secrets).
        """
        modules = tuple(preload)
        if os.path.abspath(python) == os.path.abspath(sys.executable):
            command = [python, *python_options, "-m", "nbjobs.execution.fork.template"]
        else:
            command = [python, *python_options, "-c", BOOTSTRAP, PACKAGE_ROOT]
        if modules:
            command += ["--preload", ",".join(modules)]
        if listen:
            command += ["--listen", listen]
        if runners:
            command += ["--runners"]
        log = open(log_path, "ab") if log_path else None  # noqa: SIM115 (the child keeps its copy)
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=dict(env if env is not None else os.environ) if runners else template_env(env),
                cwd="/",
                start_new_session=True,  # signals to the server's group do not reach it (or its kernels)
            )
        finally:
            if log is not None:
                log.close()
        template = cls(proc, modules, listen)
        try:
            line = template._read_line(timeout, what="to become ready")
        except TemplateError as exc:
            template.kill()
            said = _last_line(log_path)
            raise TemplateError(f"{exc.reason}: {said}" if said else exc.reason) from None
        except BaseException:
            template.kill()
            raise
        if not line.get("ready"):
            template.kill()
            raise TemplateError(
                str(line.get("reason", line)),
                str(line.get("module", "")),
                str(line.get("error", "")),
                tuple(str(p) for p in line.get("site") or ()),
            )
        template.site = tuple(str(p) for p in line.get("site") or ())
        return template

    def ping(self, timeout: float = 5) -> bool:
        """True if the template answers within ``timeout``; a template that does not is killed."""
        with self._lock:
            if not self.alive():
                return False
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(b'{"ping": true}\n')
                self.proc.stdin.flush()
                return "pong" in self._read_line(timeout, what="to a ping")
            except (OSError, TemplateError):
                self.kill()
                return False

    def fork(self, request: ForkSpec | Mapping[str, Any], timeout: float = 60) -> int:
        """Fork one kernel; its pid. Raises ``TemplateError`` if the template is gone or refuses."""
        data = request.to_json() if isinstance(request, ForkSpec) else dict(request)
        with self._lock:
            if not self.alive():
                raise TemplateError(f"fork template {self.pid} is not running ({self._ended()})")
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write((json.dumps(data) + "\n").encode())
                self.proc.stdin.flush()
            except OSError as exc:
                raise TemplateError(f"fork template {self.pid} is gone: {exc}") from exc
            try:
                reply = self._read_line(timeout, what="to fork")
            except TemplateError:
                self.kill()  # hung or dead: a late reply would answer the next request
                raise
        if "error" in reply:
            raise TemplateError(f"fork template {self.pid} could not fork a kernel: {reply['error']}")
        return int(reply["pid"])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """EOF on its stdin ends the template; the kernels it forked are not touched."""
        try:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
            self.proc.wait(timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        self._close_pipes()

    def kill(self) -> None:
        """SIGKILL the template itself (its kernels are in sessions of their own and live on)."""
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(OSError):  # a write buffered for a template that died
                    pipe.close()

    def _ended(self) -> str:
        code = self.proc.poll()
        return "still running" if code is None else f"exit code {code}"

    def _read_line(self, timeout: float, what: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TemplateError(f"fork template {self.pid} did not answer within {timeout:g}s {what}")
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait()
                raise TemplateError(
                    f"fork template {self.pid} ended ({self._ended()}) without a reply: failed {what}"
                )
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message


def _last_line(path: str | None) -> str:
    """The last line a dead template wrote to its log (its traceback's verdict), or ""."""
    if not path:
        return ""
    try:
        with open(path, "rb") as log:
            log.seek(max(os.path.getsize(path) - 4096, 0))
            text = log.read().decode(errors="replace")
            lines = [line.strip() for line in text.splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:500] if lines else ""


SEND_ATTEMPTS = 3


class _NotSent(Exception):
    """The template closed the connection before the request was written: safe to send again."""


def _exchange(listen: str, payload: bytes, log_fd: int, timeout: float) -> bytes:
    """Send one request line (the fd rides with its first bytes) and read the reply line.

    ``_NotSent`` only when the template cannot have acted: it acts on a whole line, and the line's end
    is the payload's last byte, so a send that fails before the last byte went out is safe to repeat.
    Once the whole line is out, nothing more is sent: the template may reply and hang up at once, and
    a send after that (even of nothing) fails with EPIPE although the request was taken and a kernel
    forked; asking again forked a second kernel on the same connection file (two kernels bound to
    one job's sockets: cells ran in one, the job recorded the other, or IOPub went to the other)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
        peer.settimeout(timeout)
        peer.connect(listen)
        try:
            sent = socket.send_fds(peer, [payload[:65536]], [log_fd] if log_fd >= 0 else [])
            if sent < len(payload):
                peer.sendall(payload[sent:])
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _NotSent(str(exc)) from exc
        reply = b""
        while b"\n" not in reply:
            chunk = peer.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


def request_fork(
    listen: str, spec: ForkSpec, argv: list[str] | None = None, log_fd: int = -1, timeout: float = 30
) -> int:
    """Ask the template listening at ``listen`` for a kernel (a runner's call); its pid.

    ``argv``: the stock kernel command, which the template checks it can stand in for (its own
    interpreter running ``ipykernel_launcher``) and takes the extra arguments from; ``log_fd``: the fd
    the kernel's stdout and stderr go to. Raises ``TemplateError`` (``refused`` for a command it cannot
    fork) when there is no kernel; the caller then starts one the stock way.
    """
    data = spec.to_json()
    if argv is not None:
        data["argv"] = list(argv)
    payload = (json.dumps(data) + "\n").encode()
    for attempt in range(SEND_ATTEMPTS):
        try:
            reply = _exchange(listen, payload, log_fd, timeout)
            break
        except _NotSent as exc:  # hung up before it read the request: nothing was forked, ask again
            if attempt == SEND_ATTEMPTS - 1:
                raise TemplateError(f"the fork template at {listen} did not take the request: {exc}") from exc
            time.sleep(0.05 * (attempt + 1))
        except OSError as exc:
            raise TemplateError(f"the fork template at {listen} did not answer: {exc}") from exc
    try:
        message = json.loads(reply.split(b"\n", 1)[0])
    except ValueError:
        raise TemplateError(f"the fork template at {listen} hung up without a reply") from None
    if "error" in message:
        kind = "unforkable" if message.get("unforkable") else ""
        raise TemplateError(f"the fork template could not fork a kernel: {message['error']}", kind=kind)
    return int(message["pid"])
