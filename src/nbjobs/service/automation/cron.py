"""Quartz-style cron schedules as a pure function of time: ``CronSchedule.parse(...).next_after(ms)``.

Fields are the ArcGIS task fields ``minute hour dayOfMonth month dayOfWeek`` (no seconds: a task fires
at second 0). Each field takes lists ``a,b``, ranges ``a-b`` (wrapping, e.g. ``22-2``), steps ``*/n``
and ``a/n``, and ``*``; ``dayOfMonth`` also takes ``?``, ``L``, ``L-n``, ``nW`` and ``LW``; ``dayOfWeek``
takes ``?``, names ``SUN``–``SAT``, numbers ``1``–``7`` (1 = Sunday, as in Quartz; ``0`` is accepted as
Sunday too), ``L`` (Saturday), ``xL`` (last x of the month) and ``x#n`` (n-th x of the month). Restrict
one of the two day fields only; the other is ``?`` or ``*``.

Times are wall-clock times in the schedule's IANA time zone: a local time that does not exist (the hour
skipped when clocks go forward) fires at the first instant after the gap, and a local time that occurs
twice (when clocks go back) fires once, at its first occurrence.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nbjobs.errors import InvalidRequest

MINUTE_MS = 60_000
# Long enough for the rarest schedule that can fire at all (29 February on a given weekday: 28 years).
HORIZON_DAYS = 366 * 29

_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


def _quartz_to_weekday(q: int) -> int:
    """Quartz day of week (1 = Sunday … 7 = Saturday; 0 = Sunday) to Python's (0 = Monday)."""
    return 6 if q in (0, 1) else q - 2


@dataclass(frozen=True)
class _DaySpec:
    """The days one of the two day fields allows, as a predicate over dates."""

    days: frozenset[int] = frozenset()  # day of month, or Python weekday for dayOfWeek
    last: tuple[int, ...] = ()  # L-n offsets from the last day of the month (dayOfMonth)
    nearest_weekday: tuple[int, ...] = ()  # nW (dayOfMonth)
    last_weekday: bool = False  # LW (dayOfMonth)
    last_of_month: frozenset[int] = frozenset()  # xL: Python weekdays (dayOfWeek)
    nth: frozenset[tuple[int, int]] = frozenset()  # x#n: (Python weekday, n) (dayOfWeek)

    def month_days(self, year: int, month: int, *, weekday_field: bool) -> set[int]:
        """The days of ``year-month`` this spec allows."""
        length = calendar.monthrange(year, month)[1]
        out: set[int] = set()
        if weekday_field:
            for day in range(1, length + 1):
                weekday = date(year, month, day).weekday()
                if weekday in self.days:
                    out.add(day)
                if weekday in self.last_of_month and day + 7 > length:
                    out.add(day)
                if (weekday, (day - 1) // 7 + 1) in self.nth:
                    out.add(day)
            return out
        out.update(d for d in self.days if d <= length)
        out.update(length - offset for offset in self.last if length - offset >= 1)
        for day in self.nearest_weekday:
            if day <= length:
                out.add(_nearest_weekday(year, month, day, length))
        if self.last_weekday:
            out.add(_nearest_weekday(year, month, length, length))
        return out


def _nearest_weekday(year: int, month: int, day: int, length: int) -> int:
    """Quartz ``W``: the weekday nearest ``day`` without leaving the month."""
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday: Friday before, unless that leaves the month
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: Monday after, unless that leaves the month
        return day + 1 if day < length else day - 2
    return day


@dataclass(frozen=True)
class CronSchedule:
    """A parsed, validated schedule. ``next_after`` is pure: the same input always gives the same output."""

    minute: str
    hour: str
    day_of_month: str
    month: str
    day_of_week: str
    time_zone: str
    _minutes: tuple[int, ...]
    _hours: tuple[int, ...]
    _months: frozenset[int]
    _dom: _DaySpec | None  # None: unrestricted
    _dow: _DaySpec | None
    _zone: ZoneInfo

    @classmethod
    def parse(
        cls,
        minute: str = "*",
        hour: str = "*",
        day_of_month: str = "*",
        month: str = "*",
        day_of_week: str = "?",
        time_zone: str = "UTC",
    ) -> CronSchedule:
        """Validate the five fields and the zone; InvalidRequest names the first bad field."""
        fields = {
            "minute": (minute or "").strip(),
            "hour": (hour or "").strip(),
            "dayOfMonth": (day_of_month or "").strip(),
            "month": (month or "").strip(),
            "dayOfWeek": (day_of_week or "").strip(),
        }
        for name, text in fields.items():
            if not text:
                raise InvalidRequest(f"Invalid cron field {name}: it is empty.")
            if " " in text:
                raise InvalidRequest(f"Invalid cron field {name} {text!r}: spaces are not allowed.")
        minutes = _numbers("minute", fields["minute"], 0, 59)
        hours = _numbers("hour", fields["hour"], 0, 23)
        months = _numbers("month", fields["month"], 1, 12, _MONTHS)
        dom = _day_of_month(fields["dayOfMonth"])
        dow = _day_of_week(fields["dayOfWeek"])
        if dom is not None and dow is not None:
            raise InvalidRequest(
                "Invalid cron schedule: restrict dayOfMonth or dayOfWeek, not both "
                f"(got {fields['dayOfMonth']!r} and {fields['dayOfWeek']!r}); set the other to '?'."
            )
        return cls(
            fields["minute"],
            fields["hour"],
            fields["dayOfMonth"],
            fields["month"],
            fields["dayOfWeek"],
            time_zone or "UTC",
            tuple(sorted(minutes)),
            tuple(sorted(hours)),
            frozenset(months),
            dom,
            dow,
            zone_of(time_zone or "UTC"),
        )

    def fields(self) -> dict[str, str]:
        """The ArcGIS ``cronSchedule`` object."""
        return {
            "minute": self.minute,
            "hour": self.hour,
            "dayOfMonth": self.day_of_month,
            "month": self.month,
            "dayOfWeek": self.day_of_week,
        }

    def next_after(self, after_ms: int, *, until_ms: int | None = None) -> int | None:
        """The first fire time strictly after ``after_ms`` (epoch ms), or None if there is none
        (before ``until_ms`` when given)."""
        local = datetime.fromtimestamp(after_ms / 1000, UTC).astimezone(self._zone)
        for day in self._days_from(local.date()):
            for hour in self._hours:
                for minute in self._minutes:
                    fire = _instant(day, hour, minute, self._zone)
                    if until_ms is not None and fire > until_ms:
                        return None
                    if fire > after_ms:
                        return fire
        return None

    def interval_seconds(self, after_ms: int) -> int:
        """Seconds between the next two fire times (ArcGIS ``runIntervalSeconds``); 0 if fewer than two."""
        first = self.next_after(after_ms)
        second = self.next_after(first) if first is not None else None
        return 0 if second is None or first is None else (second - first) // 1000

    def _days_from(self, start: date) -> Iterator[date]:
        day = start
        end = start + timedelta(days=HORIZON_DAYS)
        allowed: tuple[int, int, set[int]] | None = None
        while day <= end:
            if day.month not in self._months:
                day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
                continue
            if allowed is None or allowed[:2] != (day.year, day.month):
                allowed = (day.year, day.month, self._month_days(day.year, day.month))
            if day.day in allowed[2]:
                yield day
            day += timedelta(days=1)

    def _month_days(self, year: int, month: int) -> set[int]:
        if self._dom is not None:
            return self._dom.month_days(year, month, weekday_field=False)
        if self._dow is not None:
            return self._dow.month_days(year, month, weekday_field=True)
        return set(range(1, calendar.monthrange(year, month)[1] + 1))


def zone_of(name: str) -> ZoneInfo:
    """The IANA zone ``name``, else InvalidRequest."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(
            f"Unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin'."
        ) from None


def _instant(day: date, hour: int, minute: int, zone: ZoneInfo) -> int:
    """Epoch ms of a local wall time: its first occurrence, or the end of the gap it falls in."""
    wall = datetime(day.year, day.month, day.day, hour, minute)
    earlier = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if earlier.astimezone(zone).replace(tzinfo=None) == wall:
        return int(earlier.timestamp()) * 1000
    # A nonexistent time: fold=1 reads it with the offset after the change, giving an instant before
    # the gap; walk forward by minutes to the first instant whose local time is not earlier than it.
    probe = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    while probe.astimezone(zone).replace(tzinfo=None) < wall:
        probe += timedelta(minutes=1)
    return int(probe.timestamp()) * 1000


def _bad(name: str, text: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid cron field {name} {text!r}: {why}.")


def _number(name: str, text: str, lo: int, hi: int, names: dict[str, int] | None, whole: str) -> int:
    upper = text.upper()
    if names and upper in names:
        return names[upper]
    if not text.isdigit():
        allowed = ""
        if names:
            allowed = f" or {min(names, key=names.__getitem__)}-{max(names, key=names.__getitem__)}"
        raise _bad(name, whole, f"{text!r} is not a number from {lo} to {hi}{allowed}")
    value = int(text)
    if not lo <= value <= hi:
        raise _bad(name, whole, f"{value} is outside {lo}-{hi}")
    return value


def _numbers(
    name: str,
    text: str,
    lo: int,
    hi: int,
    names: dict[str, int] | None = None,
    *,
    value_lo: int | None = None,
) -> set[int]:
    """Values of a list of ``*``, ``a``, ``a-b``, ``*/n``, ``a/n``, ``a-b/n`` terms."""
    value_lo = lo if value_lo is None else value_lo
    out: set[int] = set()
    for term in text.split(","):
        if not term:
            raise _bad(name, text, "an empty list element")
        base, slash, step_text = term.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise _bad(name, text, f"the step {step_text!r} is not a positive number")
            step = int(step_text)
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            start = _number(name, a, value_lo, hi, names, text)
            end = _number(name, b, value_lo, hi, names, text)
        elif base in ("?",):
            raise _bad(name, text, "'?' is only allowed in dayOfMonth and dayOfWeek")
        else:
            start = _number(name, base, value_lo, hi, names, text)
            end = hi if slash else start
        span = list(range(start, end + 1)) if start <= end else [*range(start, hi + 1), *range(lo, end + 1)]
        out.update(span[::step])
    return out


def _day_of_month(text: str) -> _DaySpec | None:
    if text in ("*", "?"):
        return None
    days: set[int] = set()
    last: list[int] = []
    nearest: list[int] = []
    last_weekday = False
    for term in text.split(","):
        upper = term.upper()
        if upper == "L":
            last.append(0)
        elif upper.startswith("L-"):
            offset = upper[2:]
            if not offset.isdigit() or not 0 <= int(offset) <= 30:
                raise _bad("dayOfMonth", text, "L-n needs n from 0 to 30")
            last.append(int(offset))
        elif upper == "LW":
            last_weekday = True
        elif upper.endswith("W"):
            nearest.append(_number("dayOfMonth", upper[:-1], 1, 31, None, text))
        elif "L" in upper or "W" in upper or "#" in upper or "C" in upper:
            raise _bad("dayOfMonth", text, f"{term!r} is not supported (use L, L-n, nW or LW alone)")
        else:
            days |= _numbers("dayOfMonth", term, 1, 31)
    return _DaySpec(
        days=frozenset(days), last=tuple(last), nearest_weekday=tuple(nearest), last_weekday=last_weekday
    )


def _day_of_week(text: str) -> _DaySpec | None:
    if text in ("*", "?"):
        return None
    days: set[int] = set()
    last_of_month: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for term in text.split(","):
        upper = term.upper()
        if upper == "L":
            days.add(_quartz_to_weekday(7))
        elif "#" in upper:
            day, _, n = upper.partition("#")
            if not n.isdigit() or not 1 <= int(n) <= 5:
                raise _bad("dayOfWeek", text, "x#n needs n from 1 to 5")
            nth.add((_quartz_to_weekday(_number("dayOfWeek", day, 0, 7, _DAYS, text)), int(n)))
        elif upper.endswith("L"):
            last_of_month.add(_quartz_to_weekday(_number("dayOfWeek", upper[:-1], 0, 7, _DAYS, text)))
        elif "W" in upper.replace("WED", "") or "C" in upper:
            raise _bad("dayOfWeek", text, f"{term!r} is not supported")
        else:
            quartz = _numbers("dayOfWeek", upper, 1, 7, _DAYS, value_lo=0)
            days.update(_quartz_to_weekday(q) for q in quartz)
    return _DaySpec(days=frozenset(days), last_of_month=frozenset(last_of_month), nth=frozenset(nth))
