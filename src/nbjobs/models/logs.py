"""Log messages as the ArcGIS ``logs`` resource serves them, and the levels it speaks.

ArcGIS levels (most to least severe) SEVERE, WARNING, INFO, FINE, VERBOSE, DEBUG map onto Python's
numbers: SEVERE = ERROR (40, CRITICAL too), WARNING = 30, INFO = 20, FINE = 15, VERBOSE = 13,
DEBUG = 10. nbjobs logs nothing between INFO and DEBUG, so FINE and VERBOSE keep what INFO keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from nbjobs.errors import InvalidRequest


class LogLevel(StrEnum):
    SEVERE = "SEVERE"
    WARNING = "WARNING"
    INFO = "INFO"
    FINE = "FINE"
    VERBOSE = "VERBOSE"
    DEBUG = "DEBUG"


LEVEL_NUMBERS: dict[LogLevel, int] = {
    LogLevel.SEVERE: 40,
    LogLevel.WARNING: 30,
    LogLevel.INFO: 20,
    LogLevel.FINE: 15,
    LogLevel.VERBOSE: 13,
    LogLevel.DEBUG: 10,
}
DEFAULT_LOG_LEVEL = LogLevel.WARNING  # ArcGIS's default
DEFAULT_MAX_LOG_FILE_AGE_DAYS = 90  # ArcGIS's default
MAX_PAGE_SIZE = 10000  # ArcGIS's largest page (the Esri client asks for exactly this)
DEFAULT_PAGE_SIZE = 1000  # ArcGIS's default


def parse_level(raw: str, name: str = "level") -> LogLevel:
    """The ArcGIS level word ``raw`` (any case); InvalidRequest naming the allowed words."""
    try:
        return LogLevel(raw.strip().upper())
    except ValueError:
        allowed = ", ".join(level.value for level in LogLevel)
        raise InvalidRequest(f"Invalid value for '{name}': {raw!r} (expected one of {allowed}).") from None


def level_number(level: LogLevel) -> int:
    return LEVEL_NUMBERS[level]


def level_word(number: int) -> LogLevel:
    """The ArcGIS word of a Python level number (the most severe whose number it reaches)."""
    for level, threshold in LEVEL_NUMBERS.items():
        if number >= threshold:
            return level
    return LogLevel.DEBUG


@dataclass(frozen=True)
class LogMessage:
    """One stored log record: when (epoch ms), how severe (Python number), where from, what, and the
    job / user / runtime / request it was about (empty when none)."""

    time: int
    level: int
    source: str  # the logger name, e.g. nbjobs.execution.supervisor
    message: str  # the formatted message, plus the exception text if any
    machine: str = ""
    process: int = 0
    thread: str = ""
    method_name: str = ""
    job_id: str = ""
    username: str = ""
    runtime: str = ""
    request_id: str = ""

    @property
    def type(self) -> LogLevel:
        return level_word(self.level)

    def clipped(self) -> LogMessage:
        """The message with each short field cut to what its column holds (as both stores keep it)."""
        return replace(
            self,
            source=self.source[:255],
            machine=self.machine[:255],
            thread=self.thread[:255],
            method_name=self.method_name[:255],
            job_id=self.job_id[:40],
            username=self.username[:128],
            runtime=self.runtime[:64],
            request_id=self.request_id[:128],
        )


@dataclass(frozen=True)
class LogQuery:
    """Which messages, newest first: ``newest`` and ``oldest`` are inclusive epoch-ms bounds (None: no
    bound); ``sources`` match a logger name or its children (``nbjobs.execution`` matches
    ``nbjobs.execution.supervisor``); empty tuples mean any."""

    min_level: int = 0
    newest: int | None = None
    oldest: int | None = None
    sources: tuple[str, ...] = ()
    job_id: str = ""
    machines: tuple[str, ...] = ()
    processes: tuple[int, ...] = ()
    limit: int = DEFAULT_PAGE_SIZE

    def matches(self, m: LogMessage) -> bool:
        """What the in-memory store filters by (the SQL store says the same in SQL)."""
        return (
            m.level >= self.min_level
            and (self.newest is None or m.time <= self.newest)
            and (self.oldest is None or m.time >= self.oldest)
            and (not self.sources or any(m.source == s or m.source.startswith(s + ".") for s in self.sources))
            and (not self.job_id or m.job_id == self.job_id)
            and (not self.machines or m.machine in self.machines)
            and (not self.processes or m.process in self.processes)
        )


@dataclass(frozen=True)
class LogSettings:
    """The ``logs/settings`` resource: the least severe level kept and how many days messages live."""

    log_level: LogLevel = DEFAULT_LOG_LEVEL
    max_log_file_age: int = DEFAULT_MAX_LOG_FILE_AGE_DAYS

    def to_stored(self) -> dict[str, object]:
        return {"logLevel": self.log_level.value, "maxLogFileAge": self.max_log_file_age}

    @classmethod
    def from_stored(cls, values: dict[str, object]) -> LogSettings:
        """From the stored rows; anything unreadable falls back to the default (never fails)."""
        level, age = DEFAULT_LOG_LEVEL, DEFAULT_MAX_LOG_FILE_AGE_DAYS
        raw_level, raw_age = values.get("logLevel"), values.get("maxLogFileAge")
        if isinstance(raw_level, str) and raw_level.upper() in LogLevel.__members__:
            level = LogLevel(raw_level.upper())
        if isinstance(raw_age, int) and not isinstance(raw_age, bool) and raw_age > 0:
            age = raw_age
        return cls(level, age)
