"""Structured logs: the JSON lines and their context, the buffered store handler, the logs service."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from nbjobs.clock import ManualClock
from nbjobs.errors import InvalidRequest, PermissionDenied
from nbjobs.models.accounts import User
from nbjobs.models.logs import LogMessage, LogQuery
from nbjobs.service.authz import OPERATOR, USER_PRIVILEGES
from nbjobs.service.system.logs import DAY_MS, LogService, parse_time
from nbjobs.settings import load_settings
from nbjobs.store.memory.logs import MemoryLogStore
from nbjobs.telemetry.logs import (
    ContextFilter,
    JsonFormatter,
    StoreLogHandler,
    TextFormatter,
    configure_logging,
    job_context,
    request_context,
)


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger writing JSON lines with the context filter, as configure_logging sets it up."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    log = logging.getLogger("nbjobs.test.logs")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield log, stream
    log.removeHandler(handler)
    log.propagate = True


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# -- the formatter and the context ------------------------------------------------------------------


def test_json_lines_carry_time_level_logger_message_and_parse_one_by_one(logger):
    log, stream = logger
    log.info("hello %s", "world")
    log.warning('quotes " and\nnewlines')
    first, second = lines(stream)
    assert first["message"] == "hello world" and first["level"] == "INFO" and first["logger"] == log.name
    assert first["time"].endswith("Z") and abs(first["timeMs"] - time.time() * 1000) < 5000
    assert second["message"] == 'quotes " and\nnewlines'
    assert "job_id" not in first  # no context: no empty context fields


def test_a_jobs_lines_carry_job_id_username_runtime_and_only_inside_the_block(logger):
    log, stream = logger
    with job_context("j1", "alice", "rt-std"):
        log.warning("inside")
    log.warning("outside")
    inside, outside = lines(stream)
    assert (inside["job_id"], inside["username"], inside["runtime"]) == ("j1", "alice", "rt-std")
    assert "job_id" not in outside


def test_a_requests_lines_carry_its_request_id_and_jobs_nest_inside(logger):
    log, stream = logger
    with request_context("req-7"):
        log.info("a")
        with job_context("j2", "bob", "rt"):
            log.info("b")
    a, b = lines(stream)
    assert a["request_id"] == "req-7" and "job_id" not in a
    assert (b["request_id"], b["job_id"]) == ("req-7", "j2")


def test_contexts_of_two_threads_do_not_mix(logger):
    log, stream = logger
    barrier = threading.Barrier(2)

    def job(job_id: str) -> None:
        with job_context(job_id, "u", "rt"):
            barrier.wait()
            log.warning("from %s", job_id)

    threads = [threading.Thread(target=job, args=(j,)) for j in ("jA", "jB")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {(line["message"], line["job_id"]) for line in lines(stream)} == {
        ("from jA", "jA"),
        ("from jB", "jB"),
    }


def test_exception_text_and_extra_fields_are_in_the_line(logger):
    log, stream = logger
    try:
        raise ValueError("bad thing")
    except ValueError:
        log.exception("it failed", extra={"status": 500, "route": "/x"})
    (line,) = lines(stream)
    assert "ValueError: bad thing" in line["exception"] and "Traceback" in line["exception"]
    assert (line["status"], line["route"]) == (500, "/x")


def test_text_format_appends_the_context():
    record = logging.LogRecord("nbjobs.x", logging.WARNING, __file__, 1, "job ended", None, None)
    with job_context("j9", "alice", "rt"):
        ContextFilter().filter(record)
    assert TextFormatter().format(record).endswith("job ended [job_id=j9 username=alice runtime=rt]")


def test_configure_logging_installs_one_json_handler_however_often_called():
    root = logging.getLogger()
    before = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        settings = load_settings({"NBJOBS_LOG_FORMAT": "json"})
        configure_logging(settings, stream=io.StringIO())
        configure_logging(settings, stream=stream)
        ours = [h for h in root.handlers if h not in before[0]]
        assert len(ours) == 1
        logging.getLogger("nbjobs.test.configure").warning("once")
        assert json.loads(stream.getvalue().splitlines()[-1])["message"] == "once"
    finally:
        for h in [h for h in root.handlers if h not in before[0]]:
            root.removeHandler(h)
        root.setLevel(before[1])
        logging.captureWarnings(False)


def test_an_unknown_log_format_is_a_configuration_error():
    from nbjobs.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="NBJOBS_LOG_FORMAT must be text or json"):
        load_settings({"NBJOBS_LOG_FORMAT": "xml"})


# -- the buffered store handler ---------------------------------------------------------------------


def record(level: int = logging.WARNING, msg: str = "m") -> logging.LogRecord:
    return logging.LogRecord("nbjobs.test", level, __file__, 1, msg, None, None)


def test_handler_keeps_only_records_at_or_above_its_threshold():
    handler = StoreLogHandler(capacity=10, machine="h")
    handler.handle(record(logging.INFO))
    handler.handle(record(logging.WARNING, "kept"))
    batch, dropped = handler.take()
    assert [m.message for m in batch] == ["kept"] and dropped == 0


def test_handler_drops_beyond_its_bound_counts_and_logs_the_count_once_per_ship(caplog):
    store = MemoryLogStore()
    handler = StoreLogHandler(capacity=3, machine="h")
    for i in range(10):
        handler.handle(record(msg=f"r{i}"))
    assert handler.pending() == 3 and handler.dropped == 7
    with caplog.at_level(logging.WARNING, logger="nbjobs.telemetry.logs"):
        assert handler.ship(store) == 3
        handler.ship(store)  # nothing dropped since: no second line
    drops = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert drops == ["7 log message(s) dropped: the log store queue (3) was full or the store failed"]
    assert [m.message for m in store.query(LogQuery())] == ["r2", "r1", "r0"]
    assert handler.dropped_total == 7


def test_handler_emit_never_waits_for_a_store_write_in_progress():
    entered, release = threading.Event(), threading.Event()

    class StuckStore(MemoryLogStore):
        def add(self, messages):
            entered.set()
            release.wait(60)  # the database hangs until the test lets it go
            super().add(messages)

    handler = StoreLogHandler(capacity=100_000, machine="h")
    handler.handle(record())
    store = StuckStore()
    shipper = threading.Thread(target=handler.ship, args=(store,))
    shipper.start()
    assert entered.wait(60)
    for _ in range(1_000):
        handler.handle(record())
    assert shipper.is_alive() and handler.pending() == 1_000  # every emit returned during the stuck write
    release.set()
    shipper.join()
    assert len(store.query(LogQuery())) == 1


def test_handler_never_raises_on_a_record_it_cannot_read_nor_on_a_failing_store(caplog):
    class BrokenStore(MemoryLogStore):
        def add(self, messages):
            raise RuntimeError("database down")

    handler = StoreLogHandler(capacity=10, machine="h")
    bad = record(msg="%d")
    bad.args = ("not a number",)
    handler.handle(bad)  # formatted as best it can, not raised
    handler.handle(record())
    with caplog.at_level(logging.WARNING, logger="nbjobs.telemetry.logs"):
        assert handler.ship(BrokenStore()) == 0
    assert any("could not write 2 log message(s)" in r.getMessage() for r in caplog.records)
    assert any("2 log message(s) dropped" in r.getMessage() for r in caplog.records)


def test_handler_stamps_the_context_of_the_emitting_thread():
    handler = StoreLogHandler(capacity=10, machine="host-1")
    with job_context("j5", "carol", "rt-x"), request_context("req-5"):
        handler.handle(record())
    (m,) = handler.take()[0]
    assert (m.job_id, m.username, m.runtime, m.request_id, m.machine) == (
        "j5",
        "carol",
        "rt-x",
        "req-5",
        "host-1",
    )


def test_handler_takes_the_stored_level_at_each_ship():
    store = MemoryLogStore()
    handler = StoreLogHandler(capacity=10, machine="h")
    store.save_settings({"logLevel": "INFO"}, 1)
    handler.ship(store)
    handler.handle(record(logging.INFO, "info now kept"))
    assert [m.message for m in handler.take()[0]] == ["info now kept"]


# -- the service ------------------------------------------------------------------------------------


@pytest.fixture
def service() -> LogService:
    return LogService(MemoryLogStore(), ManualClock(10 * DAY_MS), started=5_000)


def add(service: LogService, *times: int, level: int = 30, **fields) -> None:
    service.store.add(
        [LogMessage(time=t, level=level, source="nbjobs.t", message=f"at {t}", **fields) for t in times]
    )


ADMIN = OPERATOR
ALICE = User("alice", "", "org_user", USER_PRIVILEGES, 0, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": "LOUD"}, "Invalid value for 'level': 'LOUD' (expected one of SEVERE, WARNING, INFO, FINE"),
        (
            {"start_time": "yesterday"},
            "Invalid value for 'startTime': 'yesterday' (expected epoch milliseconds",
        ),
        ({"end_time": "-5"}, "Invalid value for 'endTime': '-5' (must be between 0 and"),
        (
            {"start_time": "1000", "end_time": "2000"},
            "Invalid time range: endTime (2000) is after startTime (1000)",
        ),
        ({"page_size": 0}, "Invalid value for 'pageSize': 0 (must be between 1 and 10000)"),
        ({"page_size": 10001}, "Invalid value for 'pageSize': 10001"),
        (
            {"filter": {"codes": [9001]}},
            "Invalid value for 'filter.codes': nbjobs log messages carry no ArcGIS codes",
        ),
        ({"filter": {"colour": "*"}}, "Invalid value for 'filter': unknown key 'colour'"),
        (
            {"filter": {"processIds": ["12x"]}},
            "Invalid value for 'filter.processIds': '12x' is not a process id",
        ),
        ({"filter": {"machines": {"a": 1}}}, "Invalid value for 'filter.machines': expected"),
    ],
)
def test_each_bad_query_has_its_clear_message(service, kwargs, message):
    with pytest.raises(InvalidRequest) as caught:
        service.query(ADMIN, **kwargs)
    assert caught.value.message.startswith(message), caught.value.message


def test_times_are_epoch_ms_or_arcgis_timestamps_in_utc():
    assert parse_time("1312233444000", "startTime") == 1312233444000
    assert parse_time("2011-08-01T21:17:24", "startTime") == 1312233444000
    assert parse_time("2011-08-01T23:17:24+02:00", "startTime") == 1312233444000
    assert parse_time("", "startTime") is None


def test_query_defaults_to_warning_and_newest_first(service):
    add(service, 100, 300, level=30)
    add(service, 200, level=20)
    page = service.query(ADMIN)
    assert [m.time for m in page.messages] == [300, 100] and page.has_more is False
    assert [m.time for m in service.query(ADMIN, level="info").messages] == [300, 200, 100]


def test_paging_hands_over_endtime_as_the_next_starttime_without_repeats_or_gaps(service):
    times = [100, 200, 200, 200, 300, 400, 400, 500]
    add(service, *times)
    seen: list[int] = []
    start = ""
    for _ in range(20):
        page = service.query(ADMIN, start_time=start, page_size=3)
        seen += [m.time for m in page.messages]
        if not page.has_more:
            break
        start = str(page.end_time)  # what the Esri client does
    assert sorted(seen, reverse=True) == sorted(times, reverse=True)


def test_a_millisecond_larger_than_a_page_comes_whole(service):
    add(service, 100, *[200] * 5)
    first = service.query(ADMIN, page_size=2)
    assert [m.time for m in first.messages] == [200] * 5 and first.has_more and first.end_time == 199
    assert [m.time for m in service.query(ADMIN, start_time="199", page_size=2).messages] == [100]


def test_job_id_source_and_since_server_start_filter(service):
    add(service, 1_000, job_id="j1")
    add(service, 6_000, job_id="j2")
    assert [m.job_id for m in service.query(ADMIN, job_id="j1").messages] == ["j1"]
    assert [m.time for m in service.query(ADMIN, since_server_start=True).messages] == [6_000]
    assert [m.time for m in service.query(ADMIN, source=("nbjobs.t",)).messages] == [6_000, 1_000]
    assert service.query(ADMIN, filter={"services": ["nbjobs.other"]}).messages == []


def test_only_administrators_query_edit_and_clean(service):
    for call in (
        lambda: service.query(ALICE),
        lambda: service.settings(ALICE),
        lambda: service.edit_settings(ALICE, {"logLevel": "INFO"}),
        lambda: service.clean(ALICE),
    ):
        with pytest.raises(PermissionDenied, match="Only administrators can read and manage the logs"):
            call()


def test_settings_edit_validates_and_tells_the_handler(service):
    told: list[int] = []
    service.on_level = told.append
    assert service.settings(ADMIN).log_level == "WARNING" and service.settings(ADMIN).max_log_file_age == 90
    updated = service.edit_settings(ADMIN, {"logLevel": "fine", "maxLogFileAge": "7", "logDir": "/ignored"})
    assert (updated.log_level, updated.max_log_file_age, told) == ("FINE", 7, [15])
    for changes, message in (
        ({"logLevel": "OFFISH"}, "Invalid value for 'logLevel': 'OFFISH'"),
        ({"maxLogFileAge": "0"}, "Invalid value for 'maxLogFileAge': '0' (must be between 1 and 36500 days)"),
        (
            {"maxLogFileAge": "ten"},
            "Invalid value for 'maxLogFileAge': 'ten' (expected a whole number of days)",
        ),
    ):
        with pytest.raises(InvalidRequest) as caught:
            service.edit_settings(ADMIN, changes)
        assert caught.value.message.startswith(message)
    assert service.settings(ADMIN).max_log_file_age == 7  # a refused edit changed nothing


def test_retention_forgets_messages_older_than_max_log_file_age(service):
    service.edit_settings(ADMIN, {"maxLogFileAge": 3})
    now = service.clock()
    add(service, now - 4 * DAY_MS, now - 2 * DAY_MS)
    assert service.purge_expired() == 1
    assert [m.time for m in service.query(ADMIN).messages] == [now - 2 * DAY_MS]
    assert service.clean(ADMIN) == 1 and service.query(ADMIN).messages == []
