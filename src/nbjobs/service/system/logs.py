"""The ArcGIS ``logs`` resource: query the kept messages, read and edit the settings, clean (admins only).

Times follow ArcGIS: ``startTime`` is the **most recent** time of the range and ``endTime`` the oldest;
messages come newest first, and a page with ``hasMore`` answers the ``endTime`` to pass as the next
page's ``startTime`` (what the Esri client does). Pages never split the messages of one millisecond,
so that hand-over neither repeats nor skips a message.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from nbjobs.clock import Clock
from nbjobs.errors import InvalidRequest
from nbjobs.models.accounts import User
from nbjobs.models.logs import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    LogMessage,
    LogQuery,
    LogSettings,
    level_number,
    parse_level,
)
from nbjobs.models.stores import LogStore
from nbjobs.service.authz import LOGS, require_admin

DAY_MS = 24 * 3600 * 1000
MAX_TIME_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
MAX_LOG_FILE_AGE_DAYS = 36500
MAX_SAME_MS = 100_000  # messages of one millisecond a page may carry beyond pageSize
FILTER_KEYS = ("services", "server", "machines", "processIds", "codes")
_EPOCH_MS = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class LogPage:
    """One answer of ``logs/query``: ``start_time`` / ``end_time`` as ArcGIS returns them (newest and
    oldest of the range covered; with ``has_more``, ``end_time`` is the next page's ``startTime``)."""

    has_more: bool
    start_time: int
    end_time: int
    messages: list[LogMessage]


def parse_time(raw: str, name: str) -> int | None:
    """Epoch milliseconds, or an ArcGIS timestamp such as ``2026-12-01T15:17:20`` (UTC unless it names
    an offset); None when empty. InvalidRequest for anything else or out of range."""
    raw = raw.strip()
    if not raw:
        return None
    if _EPOCH_MS.fullmatch(raw):
        value = int(raw)
    else:
        try:
            when = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidRequest(
                f"Invalid value for '{name}': {raw!r} (expected epoch milliseconds or a time like "
                "2026-12-01T15:17:20, in UTC)."
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        value = int(when.timestamp() * 1000)
    if not 0 <= value <= MAX_TIME_MS:
        raise InvalidRequest(f"Invalid value for '{name}': {raw!r} (must be between 0 and {MAX_TIME_MS}).")
    return value


def _words(name: str, value: Any) -> tuple[str, ...]:
    """A filter entry: ``"*"`` / empty (any), a comma-separated string, or a JSON array of words."""
    if value is None or value == "*" or value == "":
        return ()
    if isinstance(value, str):
        words = [w.strip() for w in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        words = [str(v).strip() for v in value]
    else:
        raise InvalidRequest(
            f"Invalid value for 'filter.{name}': expected \"*\", a comma-separated string or an array "
            "of words."
        )
    found = tuple(w for w in words if w and w != "*")
    return () if "*" in words else found


@dataclass(frozen=True)
class _Filter:
    sources: tuple[str, ...] = ()
    machines: tuple[str, ...] = ()
    processes: tuple[int, ...] = ()


def parse_filter(raw: dict[str, Any] | None) -> _Filter:
    """ArcGIS's ``filter`` object: ``services`` and ``server`` name log sources (logger names, each
    matching its children too), ``machines`` host names, ``processIds`` process ids; ``codes`` is
    refused (nbjobs messages carry no ArcGIS codes), as is any other key."""
    if not raw:
        return _Filter()
    unknown = sorted(set(raw) - set(FILTER_KEYS))
    if unknown:
        raise InvalidRequest(
            f"Invalid value for 'filter': unknown key {unknown[0]!r} (expected {', '.join(FILTER_KEYS)})."
        )
    if _words("codes", raw.get("codes")):
        raise InvalidRequest("Invalid value for 'filter.codes': nbjobs log messages carry no ArcGIS codes.")
    processes = []
    for word in _words("processIds", raw.get("processIds")):
        if not word.isdigit() or int(word) >= 2**31:
            raise InvalidRequest(f"Invalid value for 'filter.processIds': {word!r} is not a process id.")
        processes.append(int(word))
    return _Filter(
        sources=_words("services", raw.get("services")) + _words("server", raw.get("server")),
        machines=_words("machines", raw.get("machines")),
        processes=tuple(processes),
    )


class LogService:
    """``logs/query``, ``logs/settings`` (+ edit), ``logs/clean`` and the retention duty."""

    def __init__(
        self,
        store: LogStore,
        clock: Clock,
        *,
        started: int,
        on_level: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.started = started  # this server's start (epoch ms): sinceServerStart
        self.on_level = on_level  # told the new level number at once when an admin edits it

    def query(
        self,
        caller: User,
        *,
        start_time: str = "",
        end_time: str = "",
        since_server_start: bool = False,
        level: str = "",
        filter: dict[str, Any] | None = None,
        source: tuple[str, ...] = (),
        job_id: str = "",
        page_size: int | None = None,
    ) -> LogPage:
        """Messages at ``level`` or more severe (default WARNING) between ``start_time`` (newest) and
        ``end_time`` (oldest), newest first, one page of ``page_size`` (1..10000, default 1000)."""
        require_admin(caller, LOGS)
        min_level = level_number(parse_level(level or "WARNING"))
        newest = parse_time(start_time, "startTime")
        oldest = parse_time(end_time, "endTime")
        if newest is not None and oldest is not None and oldest > newest:
            raise InvalidRequest(
                f"Invalid time range: endTime ({oldest}) is after startTime ({newest}). In a log query "
                "startTime is the most recent time and endTime the oldest (messages come newest first)."
            )
        size = DEFAULT_PAGE_SIZE if page_size is None else page_size
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidRequest(
                f"Invalid value for 'pageSize': {size} (must be between 1 and {MAX_PAGE_SIZE})."
            )
        if since_server_start:
            oldest = self.started if oldest is None else max(oldest, self.started)
        found = parse_filter(filter)
        query = LogQuery(
            min_level=min_level,
            newest=newest,
            oldest=oldest,
            sources=tuple(source) + found.sources,
            job_id=job_id.strip(),
            machines=found.machines,
            processes=found.processes,
            limit=size + 1,
        )
        rows = self.store.query(query)
        top = self.clock() if newest is None else newest
        if len(rows) <= size:
            bottom = oldest if oldest is not None else (rows[-1].time if rows else top)
            return LogPage(False, top, min(bottom, top), rows)
        page, last, after = rows[:size], rows[size - 1].time, rows[size].time
        if after < last:  # the page ends on a millisecond boundary
            return LogPage(True, top, last - 1, page)
        whole = [m for m in page if m.time != last]
        if whole:  # the last millisecond is cut: leave all of it to the next page
            return LogPage(True, top, last, whole)
        # One millisecond fills the page: give all of it (bounded), the next page starts below it.
        same = self.store.query(replace(query, newest=last, oldest=last, limit=MAX_SAME_MS))
        return LogPage(True, top, last - 1, same)

    def settings(self, caller: User) -> LogSettings:
        require_admin(caller, LOGS)
        return self.current()

    def current(self) -> LogSettings:
        return LogSettings.from_stored(self.store.load_settings())

    def edit_settings(self, caller: User, changes: dict[str, Any]) -> LogSettings:
        """Change ``logLevel`` and/or ``maxLogFileAge`` (days); other names (``logDir``: logs live in the
        database) are ignored. InvalidRequest for a bad value; nothing changes then."""
        require_admin(caller, LOGS)
        current = self.current()
        level, age = current.log_level, current.max_log_file_age
        if changes.get("logLevel") not in (None, ""):
            raw_level = changes["logLevel"]
            if not isinstance(raw_level, str):
                raise InvalidRequest(f"Invalid value for 'logLevel': {raw_level!r} (expected a level name).")
            level = parse_level(raw_level, "logLevel")
        if changes.get("maxLogFileAge") not in (None, ""):
            age = _days(changes["maxLogFileAge"])
        updated = LogSettings(level, age)
        self.store.save_settings(updated.to_stored(), self.clock())
        if self.on_level is not None:
            self.on_level(level_number(updated.log_level))
        return updated

    def clean(self, caller: User) -> int:
        """Forget every kept message; returns how many."""
        require_admin(caller, LOGS)
        return self.store.clear()

    def purge_expired(self) -> int:
        """The retention duty: forget messages older than ``maxLogFileAge`` days."""
        return self.store.delete_before(self.clock() - self.current().max_log_file_age * DAY_MS)


def _days(raw: object) -> int:
    text = str(raw).strip()
    if isinstance(raw, bool) or not _EPOCH_MS.fullmatch(text):
        raise InvalidRequest(f"Invalid value for 'maxLogFileAge': {raw!r} (expected a whole number of days).")
    value = int(text)
    if not 1 <= value <= MAX_LOG_FILE_AGE_DAYS:
        raise InvalidRequest(
            f"Invalid value for 'maxLogFileAge': {raw!r} (must be between 1 and "
            f"{MAX_LOG_FILE_AGE_DAYS} days)."
        )
    return value
