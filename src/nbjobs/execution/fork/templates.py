"""The fork templates of a process that runs jobs: one per (interpreter, preload), kept healthy.

``Templates.start_for(runtime)`` is what a warm pool asks before it starts a runner: the socket of a
ready template (the runner's kernel is forked from it), or, when the runtime asks for fork and none
can be had, the reason it will be spawned. A template is started on first need and rebuilt when it
died, stops answering its owner's ping, or its environment changed under it (a package installed or
upgraded: its site-packages directory changed); a runtime whose ``preload`` was edited is another
key, so another template, and the old one is stopped. A template that refused (a preload that does
not import or starts a thread) is not retried until its environment changes; one that failed for
another reason is retried after ``RETRY_SECONDS``. Each runtime's state is reported (``on_status``:
runtime id, state ``fork | spawn | fallback``, reason) when it changes, for the runtime admin API.

Kernels forked from a template do not depend on it afterwards: stopping or losing one leaves its
kernels running, each until its own runner exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nbjobs.execution.fork.client import Template, TemplateError
from nbjobs.execution.kernels import FORK, SPAWN, StartMethod

log = logging.getLogger(__name__)

FALLBACK = "fallback"
RETRY_SECONDS = 30.0  # a template that failed (not refused) is tried again after this long
CHECK_SECONDS = 10.0  # how often a template in use is pinged and its environment looked at
# A template that does not answer a ping this long is hung (a busy one answers between two forks,
# within milliseconds; a peer that stalls mid-request holds it up to SOCKET_TIMEOUT, 5 s)
PING_TIMEOUT = 30.0

StatusSink = Callable[[str, str, str], object]  # (runtime id, fork | spawn | fallback, reason)


@dataclass(frozen=True)
class TemplateKey:
    python: str  # the interpreter, by the path it is started with (a venv's python is a symlink)
    preload: tuple[str, ...]


@dataclass
class _Entry:
    key: TemplateKey
    template: Template | None = None
    refusal: str = ""  # why it refused (kept until the environment changes)
    failure: str = ""  # why it failed otherwise (kept until retry_at)
    retry_at: float = 0.0
    stamp: tuple[tuple[str, int], ...] = ()
    site: tuple[str, ...] = ()
    checked_at: float = 0.0
    directory: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def site_stamp(paths: Iterable[str]) -> tuple[tuple[str, int], ...]:
    """The modification times of an environment's package directories (changes on any install)."""
    stamp = []
    for path in paths:
        try:
            stamp.append((path, os.stat(path).st_mtime_ns))
        except OSError:
            stamp.append((path, -1))
    return tuple(stamp)


class Templates:
    """Fork templates by (interpreter, preload); thread-safe (pool fillers and job threads call it)."""

    def __init__(
        self,
        log_dir: Path,
        on_status: StatusSink | None = None,
        *,
        check_seconds: float = CHECK_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        start_timeout: float = 120.0,
        ping_timeout: float = PING_TIMEOUT,
    ) -> None:
        self.log_dir = log_dir
        self.on_status = on_status
        self.check_seconds = check_seconds
        self.retry_seconds = retry_seconds
        self.start_timeout = start_timeout
        self.ping_timeout = ping_timeout
        self._entries: dict[TemplateKey, _Entry] = {}
        self._reported: dict[str, tuple[str, str, TemplateKey | None]] = {}
        self._by_runtime: dict[str, TemplateKey] = {}
        self._lock = threading.Lock()
        self._closed = False

    def start_for(self, runtime_id: str, python: str, preload: Iterable[str], method: str) -> StartMethod:
        """How a kernel of this runtime starts now (starting or repairing its template if need be)."""
        if method != FORK:
            self._report(runtime_id, SPAWN, "", None)
            return StartMethod()
        key = TemplateKey(os.path.abspath(python or sys.executable), tuple(preload))
        with self._lock:
            if self._closed:
                return StartMethod(fallback="the server is stopping")
            entry = self._entries.setdefault(key, _Entry(key))
            previous = self._by_runtime.get(runtime_id)
            self._by_runtime[runtime_id] = key
        if previous is not None and previous != key:
            self._retire(previous)  # the runtime's preload (or interpreter) changed
        with entry.lock:
            self._ensure(entry)
            generation = f"{_label(key)} {hash(entry.stamp):x}"
            if entry.template is not None:
                self._report(runtime_id, FORK, "", key)
                return StartMethod(fork_socket=entry.template.listen, generation=generation)
            reason = entry.refusal or entry.failure
        self._report(runtime_id, FALLBACK, reason, key)
        return StartMethod(fallback=reason, generation=generation)

    def running(self) -> list[Template]:
        """The templates alive now (tests and the bench look at them)."""
        with self._lock:
            entries = list(self._entries.values())
        return [e.template for e in entries if e.template is not None and e.template.alive()]

    def close(self) -> None:
        """Stop every template (the kernels they forked live on until their runners end)."""
        with self._lock:
            self._closed = True
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            with entry.lock:
                self._stop(entry)

    # -- one template ---------------------------------------------------------------------------------
    def _ensure(self, entry: _Entry) -> None:
        now = time.monotonic()
        template = entry.template
        if template is not None:
            if not template.alive():
                log.warning("fork template %s (%s) died (%s); starting another", template.pid,
                            _label(entry.key), template.proc.returncode)  # fmt: skip
                self._stop(entry)
            elif now - entry.checked_at >= self.check_seconds:
                entry.checked_at = now
                if site_stamp(entry.site) != entry.stamp:
                    log.warning("the environment of fork template %s (%s) changed; starting another",
                                template.pid, _label(entry.key))  # fmt: skip
                    self._stop(entry)
                elif not template.ping(self.ping_timeout):
                    log.warning("fork template %s (%s) stopped answering; killed, starting another",
                                template.pid, _label(entry.key))  # fmt: skip
                    self._stop(entry)
            if entry.template is not None:
                return
        if entry.refusal:
            if now - entry.checked_at < self.check_seconds:
                return
            entry.checked_at = now
            if site_stamp(entry.site) == entry.stamp:
                return
            entry.refusal = ""  # the environment changed: it may import now
        if entry.failure and now < entry.retry_at:
            return
        self._start(entry)

    def _start(self, entry: _Entry) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        directory = tempfile.mkdtemp(prefix="nbjobs-t-")  # 0700: only our user reaches the socket
        listen = os.path.join(directory, "fork.sock")
        log_path = str(self.log_dir / f"fork-template-{abs(hash(entry.key)) % 10**8:08d}.log")
        began = time.monotonic()
        try:
            template = Template.start(
                entry.key.preload,
                python=entry.key.python,
                timeout=self.start_timeout,
                log_path=log_path,
                listen=listen,
            )
        except TemplateError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            if exc.refused:
                entry.refusal, entry.site = exc.reason, exc.site
                entry.stamp, entry.checked_at = site_stamp(exc.site), time.monotonic()
                log.warning("fork template (%s) refused: %s; its kernels are spawned",
                            _label(entry.key), exc.reason)  # fmt: skip
            else:
                self._failed(entry, exc.reason)
            return
        except OSError as exc:  # the interpreter is not there or cannot run
            shutil.rmtree(directory, ignore_errors=True)
            self._failed(entry, f"the fork template could not start: {exc}")
            return
        entry.template, entry.directory = template, directory
        entry.site, entry.stamp = template.site, site_stamp(template.site)
        entry.refusal = entry.failure = ""
        entry.checked_at = time.monotonic()
        took = time.monotonic() - began
        log.info("fork template %s (%s) ready in %.2fs", template.pid, _label(entry.key), took)

    def _failed(self, entry: _Entry, reason: str) -> None:
        entry.failure, entry.retry_at = reason, time.monotonic() + self.retry_seconds
        log.warning("fork template (%s) failed: %s; its kernels are spawned, retrying in %gs",
                    _label(entry.key), reason, self.retry_seconds)  # fmt: skip

    def _stop(self, entry: _Entry) -> None:
        if entry.template is not None:
            with contextlib.suppress(Exception):
                entry.template.stop()
        entry.template = None
        if entry.directory:
            shutil.rmtree(entry.directory, ignore_errors=True)
            entry.directory = ""

    def _retire(self, key: TemplateKey) -> None:
        with self._lock:
            if key in self._by_runtime.values():
                return  # another runtime still uses it
            entry = self._entries.pop(key, None)
        if entry is not None:
            with entry.lock:
                self._stop(entry)

    def _report(self, runtime_id: str, state: str, reason: str, key: TemplateKey | None) -> None:
        """Tell ``on_status`` once per change of state or of template: an edit of the runtime's start
        settings clears its recorded status, and the new template's state is then reported afresh."""
        if not runtime_id:  # a kernel no registered runtime owns: nothing to report it on
            return
        with self._lock:
            if self._reported.get(runtime_id) == (state, reason, key):
                return
            self._reported[runtime_id] = (state, reason, key)
        if self.on_status is not None:
            try:
                self.on_status(runtime_id, state, reason)
            except Exception as exc:  # the store may be down; the state is reported again on change
                with self._lock:
                    self._reported.pop(runtime_id, None)
                log.warning("could not record the start status of runtime %s: %s", runtime_id, exc)


def _label(key: TemplateKey) -> str:
    return f"{key.python}, preload {list(key.preload)}" if key.preload else key.python
