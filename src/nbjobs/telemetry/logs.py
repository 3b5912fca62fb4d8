"""Structured logs: the context every line carries, the JSON (or text) lines on stderr, and the buffered
handler that feeds the ArcGIS ``logs`` resource.

* ``job_context`` / ``request_context`` set who a stretch of work is about (``contextvars``: per thread
  and per asyncio task); ``ContextFilter`` stamps ``job_id``, ``username``, ``runtime`` and
  ``request_id`` on every record that passes a handler it is attached to.
* ``JsonFormatter``: one JSON object per line (``NBJOBS_LOG_FORMAT=json``); ``TextFormatter`` the
  classic line with the context appended.
* ``StoreLogHandler``: keeps records at or above the stored ``logs/settings`` level in a bounded
  in-memory queue and never blocks or fails the caller; the roots' housekeeper calls ``ship`` about
  once a second to write them to the store in one batch. Records beyond the bound are dropped and
  counted; the count is logged once per ship.
* ``configure_logging(settings)``: once per process, by the CLI (serve, worker). Nothing here installs
  a handler at import time.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any

from nbjobs.models.logs import LogMessage, LogSettings, level_number
from nbjobs.models.stores import LogStore
from nbjobs.settings import Settings

CONTEXT_FIELDS = ("job_id", "username", "runtime", "request_id")
SHIP_BATCH = 500  # rows per INSERT when the housekeeper ships the queue


@dataclass(frozen=True)
class LogContext:
    job_id: str = ""
    username: str = ""
    runtime: str = ""
    request_id: str = ""


# LogContext is frozen: one shared default is safe
_CONTEXT: contextvars.ContextVar[LogContext] = contextvars.ContextVar(
    "nbjobs_log_context",
    default=LogContext(),  # noqa: B039
)


def current_context() -> LogContext:
    return _CONTEXT.get()


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[LogContext]:
    """Set some of ``job_id``, ``username``, ``runtime``, ``request_id`` for the ``with`` block (the
    others keep their value); restored on exit."""
    context = replace(_CONTEXT.get(), **fields)
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


def job_context(job_id: str, username: str, runtime: str) -> contextlib.AbstractContextManager[LogContext]:
    """Every line logged in this block (this thread, or tasks and threads given a copy of its context)
    is about this job."""
    return log_context(job_id=job_id, username=username, runtime=runtime)


def request_context(request_id: str) -> contextlib.AbstractContextManager[LogContext]:
    return log_context(request_id=request_id)


class ContextFilter(logging.Filter):
    """Stamps the current context on each record (a value the caller passed in ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get()
        for name in CONTEXT_FIELDS:
            if not getattr(record, name, ""):
                setattr(record, name, getattr(context, name))
        return True


def _context_of(record: logging.LogRecord) -> dict[str, str]:
    context = _CONTEXT.get()
    return {name: str(getattr(record, name, "") or getattr(context, name)) for name in CONTEXT_FIELDS}


# The attributes every LogRecord has: anything else on a record came in ``extra`` and is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _exception_text(record: logging.LogRecord) -> str:
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    text = record.exc_text or ""
    if record.stack_info:
        text = f"{text}\n{record.stack_info}" if text else record.stack_info
    return text


def _message_of(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # bad %-arguments: keep what was meant rather than lose the line
        return f"{record.msg} {record.args!r}"


def iso_utc(epoch_ms: int) -> str:
    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO-8601 UTC), ``timeMs`` (epoch ms), ``level``, ``logger``,
    ``message``, ``exception`` (when any), the context fields that are set, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        ms = int(record.created * 1000)
        out: dict[str, Any] = {
            "time": iso_utc(ms),
            "timeMs": ms,
            "level": record.levelname,
            "logger": record.name,
            "message": _message_of(record),
        }
        exception = _exception_text(record)
        if exception:
            out["exception"] = exception
        for name, value in _context_of(record).items():
            if value:
                out[name] = value
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in CONTEXT_FIELDS and not name.startswith("_"):
                out.setdefault(name, value)
        out["process"] = record.process
        out["thread"] = record.threadName
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [job_id=… username=… runtime=… request_id=…]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{k}={v}" for k, v in _context_of(record).items() if v)
        if not context:
            return line
        head, sep, rest = line.partition("\n")  # after the message, before any traceback
        return f"{head} [{context}]{sep}{rest}"


class StoreLogHandler(logging.Handler):
    """Queues records at or above ``threshold`` (the stored logs/settings level) for ``ship``.

    ``emit`` never blocks on I/O and never raises: the queue is bounded by ``capacity``; a record that
    does not fit (or cannot be read) is dropped and counted."""

    def __init__(
        self, *, capacity: int, machine: str, threshold: int = level_number(LogSettings().log_level)
    ) -> None:
        super().__init__(logging.NOTSET)
        self.capacity = capacity
        self.machine = machine
        self.threshold = threshold
        self.dropped = 0  # since the last ship
        self.dropped_total = 0
        self._queue: deque[LogMessage] = deque()
        self._queue_lock = threading.Lock()
        self._log = logging.getLogger(__name__)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < self.threshold:
            return
        try:
            message = self._message(record)
        except Exception:
            message = None
        with self._queue_lock:
            if message is None or len(self._queue) >= self.capacity:
                self.dropped += 1
                self.dropped_total += 1
                return
            self._queue.append(message)

    def handle(self, record: logging.LogRecord) -> bool:
        # logging.Handler.handle serialises emit behind the handler's lock; emit takes only its own
        # short one, so the caller never waits for another thread's formatting.
        if self.filter(record):
            self.emit(record)
        return True

    def _message(self, record: logging.LogRecord) -> LogMessage:
        context = _context_of(record)
        text = _message_of(record)
        exception = _exception_text(record)
        return LogMessage(
            time=int(record.created * 1000),
            level=record.levelno,
            source=record.name,
            message=f"{text}\n{exception}" if exception else text,
            machine=self.machine,
            process=record.process or 0,
            thread=record.threadName or "",
            method_name=record.funcName or "",
            **context,
        )

    def pending(self) -> int:
        return len(self._queue)

    def take(self) -> tuple[list[LogMessage], int]:
        """Everything queued and how many were dropped since the last take; both reset."""
        with self._queue_lock:
            batch = list(self._queue)
            self._queue.clear()
            dropped, self.dropped = self.dropped, 0
        return batch, dropped

    def ship(self, store: LogStore) -> int:
        """Write what is queued to ``store`` in batches; log the drop count (once); re-read the
        stored level. Returns how many messages were written."""
        batch, dropped = self.take()
        written = 0
        try:
            for start in range(0, len(batch), SHIP_BATCH):
                chunk: Sequence[LogMessage] = batch[start : start + SHIP_BATCH]
                store.add(chunk)
                written += len(chunk)
        except Exception as exc:
            dropped += len(batch) - written
            self._log.error("could not write %d log message(s) to the store: %s", len(batch) - written, exc)
        if dropped:
            self._log.warning(
                "%d log message(s) dropped: the log store queue (%d) was full or the store failed",
                dropped,
                self.capacity,
            )
        self.refresh(store)
        return written

    def refresh(self, store: LogStore) -> None:
        """Take the level stored in logs/settings (another process may have changed it)."""
        try:
            self.threshold = level_number(LogSettings.from_stored(store.load_settings()).log_level)
        except Exception as exc:  # keep the level we had
            self._log.error("could not read the log settings: %s", exc)

    def set_threshold(self, number: int) -> None:
        self.threshold = number

    def attach(self, logger: logging.Logger | None = None) -> None:
        target = logger or logging.getLogger()
        if self not in target.handlers:
            target.addHandler(self)

    def detach(self, logger: logging.Logger | None = None) -> None:
        (logger or logging.getLogger()).removeHandler(self)


class _StderrHandler(logging.StreamHandler[IO[str]]):
    """The handler ``configure_logging`` installs (so a second call replaces it, not adds one)."""


def configure_logging(settings: Settings, *, level: str | None = None, stream: IO[str] | None = None) -> None:
    """Once per process: one stderr handler in the configured format (``text`` or ``json``) carrying the
    log context, the root level (``level`` overrides the setting), Python warnings into the log, and
    alembic quiet (migrations say what they ran only on failure)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.logging.log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel((level or settings.logging.log_level).upper())
    logging.captureWarnings(True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request to a Jupyter server: noise
