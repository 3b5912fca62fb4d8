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
TEMPLATE_ENV_PREFIXES = ("LC_", "OPENBLAS_", "OMP_", "MKL_")


class TemplateError(RuntimeError):
    """The template refused, failed or is gone; ``reason`` says why in its words."""

    def __init__(self, reason: str, module: str = "", kind: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.module = module
        self.kind = kind


def template_env(source: Mapping[str, str] | None = None) -> dict[str, str]:
    source = os.environ if source is None else source
    return {k: v for k, v in source.items() if k in TEMPLATE_ENV or k.startswith(TEMPLATE_ENV_PREFIXES)}


class Template:
    """A running template process and the pipe pair to it (requests are serialised by a lock)."""

    def __init__(self, proc: subprocess.Popen[bytes], preload: tuple[str, ...]) -> None:
        self.proc = proc
        self.preload = preload
        self.pid = proc.pid
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
    ) -> Template:
        """Start a template importing ``preload`` and wait until it is ready to fork.

        ``env``: the template's environment, filtered to ``TEMPLATE_ENV`` (no secrets); ``python_options``
        go before ``-m`` (e.g. ``-W error``); ``log_path``: the template's stderr (default: ours).
        """
        modules = tuple(preload)
        command = [python, *python_options, "-m", "nbjobs.execution.fork.template"]
        if modules:
            command += ["--preload", ",".join(modules)]
        log = open(log_path, "ab") if log_path else None  # noqa: SIM115 (the child keeps its copy)
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=template_env(env),
                cwd="/",
                start_new_session=True,  # signals to the server's group do not reach it (or its kernels)
            )
        finally:
            if log is not None:
                log.close()
        template = cls(proc, modules)
        try:
            line = template._read_line(timeout, what="to become ready")
        except BaseException:
            template.kill()
            raise
        if not line.get("ready"):
            template.kill()
            raise TemplateError(
                str(line.get("reason", line)), str(line.get("module", "")), str(line.get("error", ""))
            )
        return template

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
