"""Quartz-style cron maths: a pure function of ``now``, in a time zone, across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from nbjobs.errors import InvalidRequest
from nbjobs.service.automation.cron import CronSchedule


def ms(text: str, tz: str = "UTC") -> int:
    """Epoch ms of a local ISO time in ``tz``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def local(fire: int, tz: str = "UTC") -> str:
    return datetime.fromtimestamp(fire / 1000, UTC).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %a %Z")


def fires(schedule: CronSchedule, start: int, n: int) -> list[str]:
    out, at = [], start
    for _ in range(n):
        at = schedule.next_after(at)
        assert at is not None
        out.append(local(at, schedule.time_zone))
    return out


def test_every_minute_is_strictly_after_now():
    every = CronSchedule.parse("*/1", "*", "*", "*", "?")
    assert fires(every, ms("2024-05-14T06:00:00"), 2) == [
        "2024-05-14 06:01 Tue UTC",
        "2024-05-14 06:02 Tue UTC",
    ]
    assert local(every.next_after(ms("2024-05-14T06:00:30"))) == "2024-05-14 06:01 Tue UTC"
    assert every.interval_seconds(ms("2024-05-14T06:00:00")) == 60


def test_weekdays_at_six_with_names_and_quartz_numbers():
    by_name = CronSchedule.parse("0", "6", "?", "*", "MON-FRI")
    by_number = CronSchedule.parse("0", "6", "?", "*", "2-6")  # Quartz: 1 = Sunday
    start = ms("2024-05-17T07:00:00")  # a Friday, after 06:00
    expected = ["2024-05-20 06:00 Mon UTC", "2024-05-21 06:00 Tue UTC", "2024-05-22 06:00 Wed UTC"]
    assert fires(by_name, start, 3) == expected
    assert fires(by_number, start, 3) == expected


def test_lists_ranges_steps_and_wrapping_ranges():
    s = CronSchedule.parse("5,35", "22-1/2", "*", "JAN,MAR-APR", "?")
    got = fires(s, ms("2024-01-31T21:00:00"), 6)
    assert got == [
        "2024-01-31 22:05 Wed UTC",
        "2024-01-31 22:35 Wed UTC",
        "2024-03-01 00:05 Fri UTC",  # February is not in the month list
        "2024-03-01 00:35 Fri UTC",
        "2024-03-01 22:05 Fri UTC",
        "2024-03-01 22:35 Fri UTC",
    ]


def test_last_day_and_offsets_from_it():
    last = CronSchedule.parse("0", "0", "L", "*", "?")
    assert fires(last, ms("2024-01-15T00:00:00"), 3) == [
        "2024-01-31 00:00 Wed UTC", "2024-02-29 00:00 Thu UTC", "2024-03-31 00:00 Sun UTC",
    ]  # fmt: skip
    before_last = CronSchedule.parse("0", "0", "L-2", "*", "?")
    assert fires(before_last, ms("2023-02-01T00:00:00"), 1) == ["2023-02-26 00:00 Sun UTC"]


def test_nearest_weekday_does_not_leave_the_month():
    # 1 June 2024 is a Saturday: 1W is Monday the 3rd, not Friday 31 May.
    assert fires(CronSchedule.parse("0", "9", "1W", "6", "?"), ms("2024-05-01T00:00:00"), 1) == [
        "2024-06-03 09:00 Mon UTC"
    ]
    # 15 June 2024 is a Saturday: Friday the 14th. 16 June is a Sunday: Monday the 17th.
    assert fires(CronSchedule.parse("0", "9", "15W", "6", "?"), ms("2024-06-01T00:00:00"), 1) == [
        "2024-06-14 09:00 Fri UTC"
    ]
    assert fires(CronSchedule.parse("0", "9", "16W", "6", "?"), ms("2024-06-01T00:00:00"), 1) == [
        "2024-06-17 09:00 Mon UTC"
    ]
    # Last weekday: 31 August 2024 is a Saturday.
    assert fires(CronSchedule.parse("0", "9", "LW", "8", "?"), ms("2024-08-01T00:00:00"), 1) == [
        "2024-08-30 09:00 Fri UTC"
    ]


def test_nth_and_last_weekday_of_month():
    third_friday = CronSchedule.parse("0", "12", "?", "*", "6#3")
    assert fires(third_friday, ms("2024-05-01T00:00:00"), 2) == [
        "2024-05-17 12:00 Fri UTC",
        "2024-06-21 12:00 Fri UTC",
    ]
    assert fires(CronSchedule.parse("0", "12", "?", "*", "FRI#3"), ms("2024-05-01T00:00:00"), 1) == [
        "2024-05-17 12:00 Fri UTC"
    ]
    last_thursday = CronSchedule.parse("0", "12", "?", "*", "5L")
    assert fires(last_thursday, ms("2024-05-01T00:00:00"), 2) == [
        "2024-05-30 12:00 Thu UTC",
        "2024-06-27 12:00 Thu UTC",
    ]
    assert fires(CronSchedule.parse("0", "0", "?", "*", "L"), ms("2024-05-01T00:00:00"), 1) == [
        "2024-05-04 00:00 Sat UTC"
    ]


def test_zero_is_sunday_as_the_arcgis_client_weekly_shortcut_sends():
    weekly = CronSchedule.parse("0", "0", "*", "*", "0")
    assert fires(weekly, ms("2024-05-14T00:00:00"), 1) == ["2024-05-19 00:00 Sun UTC"]


def test_february_29th_and_impossible_dates():
    leap = CronSchedule.parse("0", "0", "29", "2", "?")
    assert fires(leap, ms("2024-03-01T00:00:00"), 1) == ["2028-02-29 00:00 Tue UTC"]
    never = CronSchedule.parse("0", "0", "31", "2", "?")
    assert never.next_after(ms("2024-01-01T00:00:00")) is None
    assert never.interval_seconds(0) == 0


def test_until_bounds_the_search():
    daily = CronSchedule.parse("0", "0", "*", "*", "?")
    assert daily.next_after(ms("2024-01-01T00:00:00"), until_ms=ms("2024-01-01T12:00:00")) is None
    assert daily.next_after(ms("2024-01-01T00:00:00"), until_ms=ms("2024-01-02T00:00:00")) == ms(
        "2024-01-02T00:00:00"
    )


BERLIN = "Europe/Berlin"


def test_time_zone_wall_clock():
    s = CronSchedule.parse("0", "6", "?", "*", "MON-FRI", BERLIN)
    fire = s.next_after(ms("2024-01-15T00:00:00", BERLIN))
    assert fire == ms("2024-01-15T05:00:00")  # 06:00 CET is 05:00 UTC
    assert local(fire, BERLIN) == "2024-01-15 06:00 Mon CET"


def test_spring_forward_nonexistent_time_fires_at_the_end_of_the_gap():
    # 31 March 2024, Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    s = CronSchedule.parse("30", "2", "*", "*", "?", BERLIN)
    assert fires(s, ms("2024-03-30T12:00:00", BERLIN), 3) == [
        "2024-03-31 03:00 Sun CEST",  # skipped forward to the first instant after the gap
        "2024-04-01 02:30 Mon CEST",
        "2024-04-02 02:30 Tue CEST",
    ]


def test_spring_forward_every_fifteen_minutes_has_no_duplicates():
    s = CronSchedule.parse("*/15", "*", "*", "*", "?", BERLIN)
    got = fires(s, ms("2024-03-31T01:30:00", BERLIN), 4)
    assert got == ["2024-03-31 01:45 Sun CET", "2024-03-31 03:00 Sun CEST", "2024-03-31 03:15 Sun CEST",
                   "2024-03-31 03:30 Sun CEST"]  # fmt: skip


def test_fall_back_ambiguous_time_fires_once():
    # 27 October 2024, Berlin: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    s = CronSchedule.parse("30", "2", "*", "*", "?", BERLIN)
    start = ms("2024-10-26T12:00:00", BERLIN)
    first = s.next_after(start)
    second = s.next_after(first)
    assert local(first, BERLIN) == "2024-10-27 02:30 Sun CEST"
    assert local(second, BERLIN) == "2024-10-28 02:30 Mon CET"
    hourly = CronSchedule.parse("0", "*", "*", "*", "?", BERLIN)
    got = fires(hourly, ms("2024-10-27T01:30:00", BERLIN), 3)
    # 02:00 fires once (CEST); the repeated hour 02:00 CET is not a second occasion.
    assert got == ["2024-10-27 02:00 Sun CEST", "2024-10-27 03:00 Sun CET", "2024-10-27 04:00 Sun CET"]


def test_fall_back_from_inside_the_repeated_hour_moves_on():
    hourly = CronSchedule.parse("30", "*", "*", "*", "?", BERLIN)
    # 02:40 CET: the second pass of the repeated hour; 02:30 CEST already happened.
    inside = ms("2024-10-27T01:40:00")  # UTC
    assert local(inside, BERLIN) == "2024-10-27 02:40 Sun CET"
    assert local(hourly.next_after(inside), BERLIN) == "2024-10-27 03:30 Sun CET"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (("60", "*", "*", "*", "?"), "minute '60': 60 is outside 0-59"),
        (("*", "24", "*", "*", "?"), "hour '24'"),
        (("*", "*", "32", "*", "?"), "dayOfMonth '32'"),
        (("*", "*", "0", "*", "?"), "dayOfMonth '0'"),
        (("*", "*", "*", "13", "?"), "month '13'"),
        (("*", "*", "*", "FOO", "?"), "month 'FOO'"),
        (("*", "*", "?", "*", "8"), "dayOfWeek '8'"),
        (("*", "*", "?", "*", "MON#6"), "x#n needs n from 1 to 5"),
        (("*/0", "*", "*", "*", "?"), "the step '0' is not a positive number"),
        (("*/x", "*", "*", "*", "?"), "step 'x'"),
        (("1,,2", "*", "*", "*", "?"), "an empty list element"),
        (("?", "*", "*", "*", "?"), "'?' is only allowed in dayOfMonth and dayOfWeek"),
        (("", "*", "*", "*", "?"), "minute: it is empty"),
        (("1 2", "*", "*", "*", "?"), "spaces are not allowed"),
        (("*", "*", "1", "*", "MON"), "restrict dayOfMonth or dayOfWeek, not both"),
        (("*", "*", "5C", "*", "?"), "is not supported"),
        (("*", "*", "L-40", "*", "?"), "L-n needs n from 0 to 30"),
        (("*", "*", "?", "*", "MONW"), "is not supported"),
        (("a-b", "*", "*", "*", "?"), "'a' is not a number"),
    ],
)
def test_malformed_fields_are_clear_invalid_requests(fields, message):
    with pytest.raises(InvalidRequest, match="Invalid cron") as info:
        CronSchedule.parse(*fields)
    assert message in info.value.message


def test_unknown_time_zone():
    with pytest.raises(InvalidRequest, match="Unknown time zone 'Mars/Olympus'"):
        CronSchedule.parse("0", "0", "*", "*", "?", "Mars/Olympus")


def test_fields_round_trip_as_the_arcgis_cron_schedule():
    s = CronSchedule.parse("*/1", "*", "*", "*", "?")
    assert s.fields() == {"minute": "*/1", "hour": "*", "dayOfMonth": "*", "month": "*", "dayOfWeek": "?"}
