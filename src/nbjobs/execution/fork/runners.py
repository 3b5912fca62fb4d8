"""Job runners forked from a runner template: a runner process in ~10 ms instead of ~250 ms.

Every job still gets a runner of its own (the process that drives the job's kernel with nbclient and
stands between it and the supervisor). What a template saves is the interpreter's start and the
runner's imports (nbclient, jupyter_client, nbformat, zmq: ~0.22 CPU-s): it imports them once, and
forks a child per runner that becomes exactly what ``Popen([python, -m, nbjobs.execution.runner, ...])``
would have started (``child.run_runner``). The supervisor drives a forked runner through the same face
as a spawned one (``ForkedRunner``: ``pid``, ``stdin``, ``stdout``, ``poll``, ``wait``, signals).

``RunnerTemplate`` is this process's template: started in the background, replaced when it dies or
stops answering; while there is none, or a fork fails, runners are spawned as before (the job's
results say ``runnerStartMethod``). A forked runner outlives its template (it watches the supervisor
through a pidfd, not its parent), and its exit status comes back on the connection it was asked on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from nbjobs.execution.fork.child import RunnerSpec
from nbjobs.execution.fork.client import Template, TemplateError
from nbjobs.execution.processes import ForkedProcess, RunnerProcess

log = logging.getLogger(__name__)

RUNNER_MODULE = "nbjobs.execution.runner"
FORK_TIMEOUT = 10.0  # a template that takes longer to fork one runner is hung: killed and replaced
RETRY_SECONDS = 30.0  # a template that failed to start is tried again after this long
EXIT_REPORT_TIMEOUT = 2.0  # the template reaps a runner within milliseconds of its exit


class ForkedRunner(ForkedProcess):
    """The ``Popen`` face of a runner forked by the runner template (not our child).

    Liveness and signals go through the pidfd the template passed (exact, whoever reaps it); the exit
    status is the one the template reports on ``report`` when it reaps the runner, or -1 if the
    template is gone by then."""

    def __init__(
        self, pid: int, pidfd: int, report: socket.socket, stdin: IO[bytes], stdout: IO[bytes]
    ) -> None:
        super().__init__(pid, pidfd)
        self.args = [sys.executable, "-m", RUNNER_MODULE, f"(forked {pid})"]
        self.stdin = stdin
        self.stdout = stdout
        self._report = report

    def _exited(self) -> None:
        """The runner has exited: read the status the template reports as it reaps it."""
        super()._exited()  # returncode -1 and the pidfd closed, unless the report says more
        data = b""
        try:
            self._report.settimeout(EXIT_REPORT_TIMEOUT)
            while b"\n" not in data:
                chunk = self._report.recv(4096)
                if not chunk:
                    break
                data += chunk
            if b"\n" in data:
                self.returncode = int(json.loads(data.split(b"\n", 1)[0])["exit"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # the template died meanwhile: the runner ended, how is not known
        finally:
            self._report.close()

    def __del__(self) -> None:
        super().__del__()
        with contextlib.suppress(Exception):
            self._report.close()


def fork_runner(listen: str, spec: RunnerSpec, timeout: float = FORK_TIMEOUT) -> ForkedRunner:
    """Ask the runner template at ``listen`` for a runner; raises ``TemplateError`` if there is none.

    The runner's stdin and stdout are pipes made here and passed along (SCM_RIGHTS), so that, as with
    ``Popen``, only this process holds their other ends."""
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    ours = [stdin_write, stdout_read]
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            peer.settimeout(timeout)
            peer.connect(listen)
            payload = (json.dumps({"runner": spec.to_json()}) + "\n").encode()
            socket.send_fds(peer, [payload[:65536]], [stdin_read, stdout_write])
            peer.sendall(payload[65536:])
        finally:
            os.close(stdin_read)  # the runner has its copies now (or there is no runner)
            os.close(stdout_write)
        reply, fds = b"", []
        while b"\n" not in reply:
            chunk, received, _flags, _addr = socket.recv_fds(peer, 65536, 1)
            fds += received
            if not chunk:
                break
            reply += chunk
        try:
            message = json.loads(reply.split(b"\n", 1)[0]) if b"\n" in reply else {}
        except ValueError:
            message = {}
        if "pid" not in message or not fds:
            for fd in fds:
                os.close(fd)
            said = message.get("error") or "it hung up without a reply"
            raise TemplateError(f"the runner template could not fork a runner: {said}")
    except OSError as exc:
        peer.close()
        for fd in ours:
            os.close(fd)
        raise TemplateError(f"the runner template at {listen} did not answer: {exc}") from exc
    except BaseException:
        peer.close()
        for fd in ours:
            os.close(fd)
        raise
    peer.setblocking(True)
    stdin, stdout = os.fdopen(stdin_write, "wb"), os.fdopen(stdout_read, "rb")
    return ForkedRunner(int(message["pid"]), fds[0], peer, stdin, stdout)


def spawn_runner(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """A runner started the stock way: a new interpreter."""
    return subprocess.Popen(
        [sys.executable, "-m", RUNNER_MODULE, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )


class RunnerTemplate:
    """This process's runner template, kept healthy; ``launch`` starts runners from it.

    ``env``: the template's environment (the runners', without the per-runner part); every request
    carries the runner's whole environment anyway. Thread-safe: pool fillers and job threads launch."""

    def __init__(
        self, log_dir: Path, env: Mapping[str, str], *, retry_seconds: float = RETRY_SECONDS
    ) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.retry_seconds = retry_seconds
        self.forked = 0  # runners forked so far
        self.spawned = 0  # runners spawned because no template could fork them
        self.reason = ""  # why the last runner was spawned ("" after a fork)
        self._template: Template | None = None
        self._directory = ""
        self._starting = False
        self._retry_at = 0.0
        self._closed = False
        self._lock = threading.Lock()

    @property
    def template(self) -> Template | None:
        """The template serving now (None while none is)."""
        with self._lock:
            return self._template

    def start(self) -> None:
        """Start the template in the background, if none is running or starting."""
        with self._lock:
            if self._closed or self._starting or (self._template is not None and self._template.alive()):
                return
            if time.monotonic() < self._retry_at:
                return
            self._starting = True
        threading.Thread(target=self._start, name="nbjobs-runner-template", daemon=True).start()

    def launch(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> RunnerProcess:
        """A runner for ``argv``: forked from the template, or spawned while it cannot be."""
        template = self._serving()
        if template is not None:
            try:
                runner = fork_runner(template.listen, RunnerSpec(tuple(argv), str(cwd), dict(env)))
            except TemplateError as exc:
                self._failed(template, exc.reason)
            else:
                with self._lock:
                    self.forked += 1
                    self.reason = ""
                return runner
        with self._lock:
            self.spawned += 1
        return spawn_runner(argv, env, cwd)

    def close(self) -> None:
        """Stop the template (runners it forked run on, each until its job ends)."""
        with self._lock:
            self._closed = True
            template, self._template = self._template, None
            directory, self._directory = self._directory, ""
        if template is not None:
            template.stop()
        if directory:
            shutil.rmtree(directory, ignore_errors=True)

    # -- the template's life --------------------------------------------------------------------------
    def _serving(self) -> Template | None:
        with self._lock:
            template = self._template
        if template is not None and template.alive():
            return template
        if template is not None:
            self._failed(template, f"the runner template {template.pid} died ({template.proc.returncode})")
        self.start()
        with self._lock:
            self.reason = self.reason or "the runner template is starting"
        return None

    def _start(self) -> None:
        directory = tempfile.mkdtemp(prefix="nbjobs-r-")  # 0700: only our user reaches the socket
        listen = os.path.join(directory, "fork.sock")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        try:
            template = Template.start(
                (RUNNER_MODULE,),
                env=self.env,
                log_path=str(self.log_dir / "runner-template.log"),
                listen=listen,
                runners=True,
            )
        except (TemplateError, OSError) as exc:
            shutil.rmtree(directory, ignore_errors=True)
            with self._lock:
                self._starting = False
                self._retry_at = time.monotonic() + self.retry_seconds
                self.reason = f"the runner template could not start: {exc}"
            log.warning("%s; runners are spawned, retrying in %gs", self.reason, self.retry_seconds)
            return
        with self._lock:
            self._starting = False
            if self._closed:
                closed = True
            else:
                closed = False
                self._template, self._directory = template, directory
        if closed:
            template.stop()
            shutil.rmtree(directory, ignore_errors=True)
            return
        log.info("runner template %s ready in %.2fs", template.pid, time.monotonic() - began)

    def _failed(self, template: Template, reason: str) -> None:
        """The template could not fork: kill it (a late answer would be nobody's), start another."""
        with self._lock:
            if self._template is template:
                self._template = None
                directory, self._directory = self._directory, ""
            else:
                directory = ""
            self.reason = reason
        log.warning("%s; this runner is spawned, and another template started", reason)
        with contextlib.suppress(Exception):
            template.kill()
        if directory:
            shutil.rmtree(directory, ignore_errors=True)
        self.start()
