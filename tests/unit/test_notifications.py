"""Notifications over real parts: a SQLite store, an HTTP receiver on loopback, aiosmtpd and raw SMTP
servers that misbehave. Time is a ManualClock; the sender is stepped with ``pump(wait=True)``."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbjobs.clock import ManualClock
from nbjobs.errors import InvalidNotificationRule, NotificationTargetRefused, PermissionDenied
from nbjobs.models.accounts import Principal
from nbjobs.models.jobs import (
    OUTPUT,
    Failure,
    FailureReason,
    Job,
    JobInputs,
    JobStatus,
    JobType,
    JobUpdate,
    new_job_id,
)
from nbjobs.models.notifications import DeliveryStatus
from nbjobs.models.runtimes import DEFAULT_RUNTIME
from nbjobs.service.automation.webhooks import check_signature
from nbjobs.service.notifications.events import NotifyPolicy
from nbjobs.service.notifications.service import NotificationService
from nbjobs.service.notifications.targets import AllowList, check_url
from nbjobs.service.notifications.webhook import MAX_RESPONSE_BYTES, SIGNATURE_HEADER
from nbjobs.settings import load_settings
from nbjobs.store.engine import open_store
from nbjobs.store.jobs import SqlJobStore
from nbjobs.store.notifications import SqlNotificationStore
from tests.conftest import notebook_bytes
from tests.receivers import RawSmtp, Receiver, SmtpServer
from tests.waiting import eventually

SECRET = "a-secret-of-twenty-chars"
ADMIN = Principal("admin", is_admin=True)
ALICE = Principal("alice")
TRACEBACK = (
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
    "\x1b[0;31mValueError\x1b[0m                                Traceback (most recent call last)",
    "Cell \x1b[0;32mIn[1], line 1\x1b[0m\n"
    "\x1b[0;32m----> 1\x1b[0m \x1b[38;5;28;01mraise\x1b[39;00m ValueError('boom')",
    "\x1b[0;31mValueError\x1b[0m: boom",
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000_000)


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[SqlJobStore]:
    store = open_store(load_settings({}, data_dir=tmp_path))
    yield store
    store.close()


def service(jobs: SqlJobStore, clock: ManualClock, **policy: object) -> NotificationService:
    defaults: dict[str, object] = {
        "timeout_seconds": 2.0,
        "retry_base_seconds": 10.0,
        "retry_max_seconds": 600.0,
    }
    return NotificationService(
        SqlNotificationStore(jobs.engine),
        jobs,
        clock,
        policy=NotifyPolicy(**{**defaults, **policy}),  # type: ignore[arg-type]
        allow=AllowList.parse(["127.0.0.1"]),
        rng=random.Random(7),
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    s = SmtpServer().start()
    yield s
    s.stop()


def submit(jobs: SqlJobStore, clock: ManualClock) -> Job:
    job = Job(
        job_id=new_job_id(),
        type=JobType.EXECUTE_NOTEBOOK,
        username="alice",
        status=JobStatus.SUBMITTED,
        inputs=JobInputs(item_id="i" * 32),
        runtime=DEFAULT_RUNTIME,
        date_created=clock(),
        revision=clock(),
    )
    assert jobs.create(job, notebook_bytes("raises.ipynb"))
    return job


def start(jobs: SqlJobStore, clock: ManualClock, job: Job) -> Job:
    claimed = jobs.claim(job.job_id, 1, "host/1", clock(), 60_000)
    assert claimed is not None
    return claimed


def fail(
    jobs: SqlJobStore, clock: ManualClock, job: Job, reason: FailureReason = FailureReason.CELL_ERROR
) -> Job:
    start(jobs, clock, job)
    failure = Failure(reason, "An error occurred in cell 1", 1, "ValueError", "boom", TRACEBACK)
    if reason != FailureReason.CELL_ERROR:
        failure = Failure(reason, f"the job ended: {reason}")
    ended = jobs.transition(
        job.job_id, JobStatus.FAILED, clock(), attempt=1, update=JobUpdate(failure=failure, end_time=clock())
    )
    assert ended is not None
    return ended


def hook_rules(notify: NotificationService, url: str, events: list[str] | None = None):
    return notify.parse([{"id": "hook", "events": events or ["failed"], "url": url, "secret": SECRET}])


# -- rules at the edge -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://localhost/x",  # resolves to loopback
        "http://10.1.2.3/x",
        "http://192.168.0.5/x",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata: link-local
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",  # IPv4-mapped loopback
        "http://[fc00::1]/x",  # unique local
        "http://0.0.0.0/x",
        "http://224.0.0.1/x",  # multicast
    ],
)
def test_a_url_at_loopback_or_private_address_is_refused_unless_allow_listed(url):
    with pytest.raises(NotificationTargetRefused, match="loopback, private or reserved"):
        check_url(url, AllowList())
    host = (
        url.split("//")[1].split("/")[0].rsplit(":", 1)[0]
        if "[" not in url
        else url.split("[")[1].split("]")[0]
    )
    allowed = AllowList.parse(["0.0.0.0/0", "::/0", "localhost"])
    assert check_url(url, allowed).host.strip("[]") == host.strip("[]")


def test_a_name_that_resolves_to_one_private_address_among_public_ones_is_refused():
    def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.7"]

    with pytest.raises(NotificationTargetRefused, match="10.0.0.7"):
        check_url("https://hooks.example.com/x", AllowList(), resolve)
    assert (
        check_url("https://hooks.example.com/x", AllowList.parse(["10.0.0.0/8"]), resolve).address
        == "93.184.216.34"
    )


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("not json", "not JSON"),
        ('{"events": ["failed"]}', "JSON list"),
        ('[{"events": ["exploded"], "email": "a@example.com"}]', "unknown event 'exploded'"),
        ('[{"events": [], "email": "a@example.com"}]', "non-empty list"),
        ('[{"events": ["failed"]}]', "exactly one of 'email' or 'url'"),
        ('[{"events": ["failed"], "email": "not-an-address"}]', "is not an email address"),
        ('[{"events": ["failed"], "url": "https://example.com/x"}]', "secret is required"),
        ('[{"events": ["failed"], "url": "ftp://example.com/x", "secret": "0123456789abcdef"}]', "https://"),
        (
            '[{"events": ["failed"], "url": "https://u:p@example.com/", "secret": "0123456789abcdef"}]',
            "credentials",
        ),
        ('[{"events": ["runningLonger"], "email": "a@example.com"}]', "afterMinutes"),
        ('[{"events": ["runningLonger"], "afterMinutes": -5, "email": "a@example.com"}]', "afterMinutes"),
        (
            '[{"events": ["runningLonger"], "afterMinutes": 99999999, "email": "a@example.com"}]',
            "afterMinutes",
        ),
        ('[{"events": ["failed"], "email": "a@example.com", "color": "red"}]', "unknown keys"),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ],
)
def test_bad_rules_get_a_clear_error(jobs, clock, rules, message):
    with pytest.raises(InvalidNotificationRule, match=message):
        service(jobs, clock).parse(rules)


def test_the_loopback_receiver_is_refused_at_rule_creation_until_an_admin_allow_lists_it(
    jobs, clock, receiver
):
    notify = NotificationService(SqlNotificationStore(jobs.engine), jobs, clock)  # no operator allow-list
    with pytest.raises(NotificationTargetRefused):
        hook_rules(notify, receiver.url)
    with pytest.raises(PermissionDenied):
        notify.update_settings(ALICE, allow_list=["127.0.0.1"])
    notify.update_settings(ADMIN, allow_list=["127.0.0.1"])
    assert hook_rules(notify, receiver.url)[0].target == receiver.url


# -- webhooks -------------------------------------------------------------------------------------


def test_webhook_is_signed_as_inbound_receivers_verify_and_retried_with_backoff_until_it_succeeds(
    jobs, clock, receiver
):
    notify = service(jobs, clock)
    receiver.answers = ["500", "500", "200"]
    job = submit(jobs, clock)
    notify.attach(job, hook_rules(notify, receiver.url))
    fail(jobs, clock, job)
    assert notify.scan() == 1
    assert notify.scan() == 0  # enqueued once
    for _ in range(3):
        (due,) = notify.store.due(10**15)
        clock.now = due.next_attempt_at
        assert notify.pump(wait=True) == 1
        assert notify.pump(wait=True) == 0  # the next attempt is not due yet
    (delivery,) = notify.store.deliveries(job.job_id)
    assert delivery.status == DeliveryStatus.SENT and delivery.attempts == 3
    attempts = notify.store.attempts(delivery.delivery_id)
    assert [a.ok for a in attempts] == [False, False, True]
    assert attempts[0].detail.startswith("HTTP 500")
    # backoff with full jitter: attempt n waits uniform [0, base * 2 ** (n - 1)]
    gaps = [b.at - a.at for a, b in zip(attempts, attempts[1:], strict=False)]
    assert 0 <= gaps[0] <= 10_000 and 0 <= gaps[1] <= 20_000
    assert len(receiver.received) == 3
    bodies = {r.body for r in receiver.received}
    assert len(bodies) == 1  # every attempt sends the same payload
    for request in receiver.received:
        check_signature(SECRET, request.body, request.headers, (SIGNATURE_HEADER.lower(),))
        assert request.headers["idempotency-key"] == f"{job.job_id}:hook:failed"
    payload = json.loads(receiver.received[0].body)
    assert payload["idempotencyKey"] == f"{job.job_id}:hook:failed"
    assert payload["job"]["failure"]["reason"] == "cell_error"
    assert payload["job"]["failure"]["traceback"][-1] == "ValueError: boom"  # ANSI stripped


def test_backoff_jitter_stays_within_its_bounds_and_is_capped():
    policy = NotifyPolicy(retry_base_seconds=10, retry_max_seconds=300)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 10_000), (2, 20_000), (3, 40_000), (6, 300_000), (30, 300_000)]:
        draws = [policy.backoff_ms(attempt, rng) for _ in range(500)]
        assert min(draws) >= 0 and max(draws) <= ceiling
        assert max(draws) > 0.8 * ceiling and min(draws) < 0.2 * ceiling  # jittered over the whole range


def test_attempts_stop_at_the_retry_window_and_the_delivery_gives_up(jobs, clock, receiver):
    notify = service(jobs, clock, retry_window_seconds=120.0, retry_base_seconds=20.0, retry_max_seconds=40.0)
    receiver.answers = ["500"] * 100
    job = submit(jobs, clock)
    notify.attach(job, hook_rules(notify, receiver.url))
    fail(jobs, clock, job)
    notify.scan()
    created = clock()
    for _ in range(100):
        due = notify.store.due(10**15)
        if not due:
            break
        clock.now = due[0].next_attempt_at
        notify.pump(wait=True)
    (delivery,) = notify.store.deliveries(job.job_id)
    assert delivery.status == DeliveryStatus.GAVE_UP
    attempts = notify.store.attempts(delivery.delivery_id)
    assert len(attempts) >= 3 and all(not a.ok for a in attempts)
    assert attempts[-1].at <= created + 120_000
    assert len(receiver.received) == len(attempts)


def test_a_hanging_receiver_times_out_without_slowing_the_caller(jobs, clock, receiver):
    # a send that waited for the 6 s timeout would break the 3 s bounds; 3 s holds on a loaded machine
    notify = service(jobs, clock, timeout_seconds=6)
    receiver.answers = ["hang"]
    job = submit(jobs, clock)
    notify.attach(job, hook_rules(notify, receiver.url))
    fail(jobs, clock, job)
    notify.scan()
    began = time.monotonic()
    assert notify.pump() == 1  # the duty hands the attempt to a sender thread and returns
    handed_off = time.monotonic() - began
    assert handed_off < 3, handed_off
    # meanwhile the store (the API's, the supervisor's) is not held: another job submits at once
    began = time.monotonic()
    submit(jobs, clock)
    assert time.monotonic() - began < 3
    notify.close()  # waits for the sender
    (attempt,) = notify.store.attempts(notify.store.deliveries(job.job_id)[0].delivery_id)
    assert not attempt.ok and "timed out" in attempt.detail
    assert 5900 <= attempt.duration_ms < 9900  # the 6 s timeout, not the receiver's 10 s hang
    assert notify.store.deliveries(job.job_id)[0].status == DeliveryStatus.PENDING  # retried later


def test_a_redirect_is_not_followed_and_counts_as_a_failed_attempt(jobs, clock, receiver):
    notify = service(jobs, clock)
    receiver.answers = ["redirect"]
    job = submit(jobs, clock)
    notify.attach(job, hook_rules(notify, receiver.url))
    fail(jobs, clock, job)
    notify.scan()
    notify.pump(wait=True)
    (attempt,) = notify.store.attempts(notify.store.deliveries(job.job_id)[0].delivery_id)
    assert not attempt.ok and "redirect to 'http://203.0.113.9/elsewhere' not followed" in attempt.detail
    assert len(receiver.received) == 1  # nothing reached the other host


def test_a_10_mb_answer_is_read_only_up_to_the_cap(jobs, clock, receiver):
    notify = service(jobs, clock)
    receiver.answers = ["huge"]
    job = submit(jobs, clock)
    notify.attach(job, hook_rules(notify, receiver.url))
    fail(jobs, clock, job)
    notify.scan()
    notify.pump(wait=True)
    (attempt,) = notify.store.attempts(notify.store.deliveries(job.job_id)[0].delivery_id)
    assert attempt.ok and attempt.detail == "HTTP 200"
    eventually(lambda: receiver.huge_done, what="the receiver to notice the closed connection")
    assert receiver.huge_bytes_written < 10 * 1024 * 1024  # the sender hung up after MAX_RESPONSE_BYTES
    assert MAX_RESPONSE_BYTES == 64 * 1024


def test_a_url_that_rebinds_to_loopback_after_the_rule_was_accepted_is_refused_at_send(jobs, clock, receiver):
    answers = {"hooks.example.com": ["93.184.216.34"]}
    notify = service(jobs, clock)
    notify.resolve = lambda host, port: answers[host]
    notify.operator_allow = AllowList()
    job = submit(jobs, clock)
    notify.attach(job, hook_rules(notify, f"http://hooks.example.com:{receiver.url.split(':')[2]}"))
    answers["hooks.example.com"] = ["127.0.0.1"]  # the DNS answer changes
    fail(jobs, clock, job)
    notify.scan()
    notify.pump(wait=True)
    (delivery,) = notify.store.deliveries(job.job_id)
    assert delivery.status == DeliveryStatus.GAVE_UP  # refusing again will not help
    assert "points at 127.0.0.1" in delivery.last_error
    assert receiver.received == []


# -- which events --------------------------------------------------------------------------------------


def events_sent(notify: NotificationService, job: Job) -> list[str]:
    return [str(d.event) for d in notify.store.deliveries(job.job_id)]


def test_each_event_is_enqueued_once_when_the_job_reaches_it(jobs, clock, receiver):
    notify = service(jobs, clock)
    rules = notify.parse(
        [
            {
                "id": "all",
                "events": ["started", "succeeded", "failed", "timedOut", "cancelled"],
                "url": receiver.url,
                "secret": SECRET,
            },
            {
                "id": "long",
                "events": ["runningLonger"],
                "afterMinutes": 5,
                "url": receiver.url,
                "secret": SECRET,
            },
        ]
    )
    slow = submit(jobs, clock)
    notify.attach(slow, rules)
    notify.scan()
    assert events_sent(notify, slow) == []  # SUBMITTED: nothing yet
    start(jobs, clock, slow)
    notify.scan()
    notify.scan()
    assert events_sent(notify, slow) == ["started"]
    clock.advance(4 * 60_000)
    notify.scan()
    assert events_sent(notify, slow) == ["started"]
    clock.advance(61_000)
    notify.scan()
    notify.scan()
    assert events_sent(notify, slow) == ["started", "runningLonger"]
    clock.advance(1000)
    jobs.transition(slow.job_id, JobStatus.COMPLETED, clock(), attempt=1, update=JobUpdate(end_time=clock()))
    notify.scan()
    assert events_sent(notify, slow) == ["started", "runningLonger", "succeeded"]
    assert notify.store.watch_of(slow.job_id).done

    timed_out = submit(jobs, clock)
    notify.attach(timed_out, rules)
    fail(jobs, clock, timed_out, FailureReason.TIMEOUT)
    notify.scan()
    assert events_sent(notify, timed_out) == ["started", "timedOut"]  # one terminal event per rule

    only_failed = submit(jobs, clock)
    notify.attach(only_failed, notify.parse([{"events": ["failed"], "email": "ops@example.com"}]))
    fail(jobs, clock, only_failed, FailureReason.TIMEOUT)
    notify.scan()
    assert events_sent(notify, only_failed) == ["failed"]  # a timeout is a failure to a 'failed' rule

    cancelled = submit(jobs, clock)
    notify.attach(cancelled, rules)
    jobs.transition(cancelled.job_id, JobStatus.CANCELLED, clock(), update=JobUpdate(end_time=clock()))
    notify.scan()
    assert events_sent(notify, cancelled) == ["cancelled"]  # never started: no 'started'


def test_two_replicas_scanning_at_once_enqueue_each_delivery_once(jobs, clock, receiver):
    one, two = service(jobs, clock), service(jobs, clock)
    job = submit(jobs, clock)
    one.attach(job, hook_rules(one, receiver.url))
    fail(jobs, clock, job)
    assert one.scan() + two.scan() == 1
    (due,) = one.store.due(clock())
    assert one.store.claim(due.delivery_id, due.next_attempt_at, clock() + 60_000)
    assert two.pump(wait=True) == 0  # claimed by the other replica
    assert one.pump(wait=True) == 0


def test_the_delivery_log_is_for_the_jobs_owner_and_admins(jobs, clock, receiver):
    notify = service(jobs, clock)
    job = submit(jobs, clock)
    notify.attach(job, hook_rules(notify, receiver.url))
    fail(jobs, clock, job)
    notify.scan()
    notify.pump(wait=True)
    for who in (ALICE, ADMIN):
        ((delivery, attempts),) = notify.job_deliveries(who, job.job_id)
        assert delivery.status == DeliveryStatus.SENT and len(attempts) == 1
        assert notify.rules_of_job(who, job.job_id)[0].to_wire()["secret"] == "********"
    from nbjobs.errors import JobNotFound

    with pytest.raises(JobNotFound):
        notify.job_deliveries(Principal("bob"), job.job_id)
    with pytest.raises(PermissionDenied):
        notify.recent(ALICE)
    assert len(notify.recent(ADMIN, status="sent")) == 1


# -- email --------------------------------------------------------------------------------------------


def mail_service(jobs, clock, port: int, **smtp: object) -> NotificationService:
    notify = service(jobs, clock, timeout_seconds=1.0)
    notify.update_settings(
        ADMIN,
        smtp={
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "fromAddress": "nbjobs@example.com",
            "timeoutSeconds": 1.0,
            **smtp,
        },
    )
    return notify


def test_the_failure_mail_carries_the_failing_cell_the_traceback_and_the_notebook(jobs, clock, smtp):
    notify = mail_service(jobs, clock, smtp.port)
    job = submit(jobs, clock)
    notify.attach(
        job,
        notify.parse(
            [{"events": ["failed"], "email": "ops@example.com, me@example.com", "attachNotebook": True}]
        ),
    )
    ended = fail(jobs, clock, job)
    jobs.put_blob(job.job_id, OUTPUT, notebook_bytes("raises.ipynb"), clock())
    notify.scan()
    notify.pump(wait=True)
    (delivery,) = notify.store.deliveries(ended.job_id)
    assert delivery.status == DeliveryStatus.SENT, delivery.last_error
    (message,) = smtp.handler.messages
    assert smtp.handler.envelopes == [("nbjobs@example.com", ["ops@example.com", "me@example.com"])]
    assert message["Subject"] == f"[nbjobs] job {job.job_id} failed (cell_error)"
    assert message["X-Nbjobs-Idempotency-Key"] == f"{job.job_id}:{delivery.rule.rule_id}:failed"
    text, attachment = [part for part in message.walk() if not part.is_multipart()]
    body = text.get_payload(decode=True).decode()
    assert "Failing cell: 1" in body
    assert "ValueError: boom" in body
    assert "Traceback (most recent call last)" in body
    assert "\x1b" not in body  # ANSI colour codes stripped
    assert attachment.get_filename() == f"{job.job_id}.html"
    assert b"<html" in attachment.get_payload(decode=True)


def test_an_smtp_server_that_refuses_the_message_is_retried(jobs, clock, smtp):
    notify = mail_service(jobs, clock, smtp.port)
    smtp.handler.refuse = "550 5.7.1 not today"
    job = submit(jobs, clock)
    notify.attach(job, notify.parse([{"events": ["failed"], "email": "ops@example.com"}]))
    fail(jobs, clock, job)
    notify.scan()
    notify.pump(wait=True)
    (delivery,) = notify.store.deliveries(job.job_id)
    assert delivery.status == DeliveryStatus.PENDING and "SMTP 550" in delivery.last_error
    smtp.handler.refuse = ""
    clock.now = delivery.next_attempt_at
    notify.pump(wait=True)
    (delivery,) = notify.store.deliveries(job.job_id)
    assert delivery.status == DeliveryStatus.SENT and delivery.attempts == 2
    assert len(smtp.handler.messages) == 1


@pytest.mark.parametrize(("mode", "error"), [("silent", "timed out"), ("drop", "SMTPServerDisconnected")])
def test_an_smtp_server_that_stalls_or_hangs_up_mid_message_is_a_failed_attempt(jobs, clock, mode, error):
    raw = RawSmtp(mode).start()
    try:
        notify = mail_service(jobs, clock, raw.port)
        job = submit(jobs, clock)
        notify.attach(job, notify.parse([{"events": ["failed"], "email": "ops@example.com"}]))
        fail(jobs, clock, job)
        notify.scan()
        notify.pump(wait=True)
        (delivery,) = notify.store.deliveries(job.job_id)
        assert delivery.status == DeliveryStatus.PENDING
        assert error in delivery.last_error
        assert raw.connections == 1
    finally:
        raw.stop()


def test_smtp_settings_are_checked_and_the_password_is_write_only(jobs, clock):
    notify = service(jobs, clock)
    view = notify.update_settings(
        ADMIN,
        smtp={"host": "mail.example.com", "port": 465, "security": "ssl", "username": "u", "password": "p"},
    )
    assert view["smtp"]["passwordSet"] is True and "password" not in view["smtp"]
    assert notify.smtp_settings().password == "p"
    for bad, message in [
        ({"port": 0}, "port"),
        ({"port": "25"}, "port"),
        ({"security": "tls13"}, "security"),
        ({"timeoutSeconds": 0}, "timeoutSeconds"),
        ({"fromAddress": "nobody"}, "fromAddress"),
        ({"colour": 1}, "unknown keys"),
    ]:
        from nbjobs.errors import InvalidRequest

        with pytest.raises(InvalidRequest, match=message):
            notify.update_settings(ADMIN, smtp=bad)
    with pytest.raises(InvalidNotificationRule, match="allow-list entry"):
        notify.update_settings(ADMIN, allow_list=["not a host!"])


def test_a_crash_between_the_jobs_end_and_the_scan_loses_nothing(jobs, clock, receiver):
    before = service(jobs, clock)  # the process that dies: it never scanned
    job = submit(jobs, clock)
    before.attach(job, hook_rules(before, receiver.url))
    fail(jobs, clock, job)
    after = service(jobs, clock)  # the restarted process derives the outbox from the job table
    assert after.scan() == 1
    after.pump(wait=True)
    assert len(receiver.received) == 1
    assert after.scan() == 0 and after.pump(wait=True) == 0
    assert len(receiver.received) == 1


def test_a_watch_whose_job_never_appeared_is_dropped_after_a_grace(jobs, clock):
    notify = service(jobs, clock)
    notify.store.watch(
        "j" + "z" * 32, "alice", notify.parse([{"events": ["failed"], "email": "a@example.com"}]), clock()
    )
    notify.scan()
    assert len(notify.store.watches()) == 1  # the submit may still be on its way
    clock.advance(61_000)
    notify.scan()
    assert notify.store.watches() == []


def test_an_https_receiver_gets_the_name_for_tls_while_the_connection_goes_to_the_checked_address(
    jobs, clock, tmp_path
):
    from nbjobs.web.tls import ensure_self_signed

    cert, key, _ = ensure_self_signed(tmp_path, "localhost")
    receiver = Receiver(tls=(str(cert), str(key))).start()
    try:
        notify = service(jobs, clock)
        notify.resolve = lambda host, port: ["127.0.0.1"]  # "localhost", pinned to the checked address
        job = submit(jobs, clock)
        notify.attach(job, hook_rules(notify, receiver.https_url))
        fail(jobs, clock, job)
        notify.scan()
        notify.pump(wait=True)
        (attempt,) = notify.store.attempts(notify.store.deliveries(job.job_id)[0].delivery_id)
        assert not attempt.ok and "CERTIFICATE_VERIFY_FAILED" in attempt.detail  # self-signed: refused
        notify.policy = NotifyPolicy(timeout_seconds=2.0, verify_tls=False)
        clock.now = notify.store.deliveries(job.job_id)[0].next_attempt_at
        notify.pump(wait=True)
        assert notify.store.deliveries(job.job_id)[0].status == DeliveryStatus.SENT
        (request,) = [r for r in receiver.received]
        assert request.headers["host"] == f"localhost:{receiver.https_url.split(':')[2].split('/')[0]}"
        check_signature(SECRET, request.body, request.headers, (SIGNATURE_HEADER.lower(),))
    finally:
        receiver.stop()


class CountingJobStore(SqlJobStore):
    """The real SQL job store, counting the jobs it reads one by one."""

    reads = 0

    def get(self, job_id: str):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().get(job_id)


def test_a_scan_reads_a_watched_job_again_only_when_it_changed(jobs, clock, receiver):
    counting = CountingJobStore(jobs.engine)
    notify = NotificationService(
        SqlNotificationStore(jobs.engine), counting, clock, allow=AllowList.parse(["127.0.0.1"])
    )
    waiting = [submit(jobs, clock) for _ in range(20)]
    for job in waiting:
        notify.attach(job, hook_rules(notify, receiver.url, ["started", "failed"]))
    notify.scan()
    assert counting.reads == 20  # first sight of each
    notify.scan()
    notify.scan()
    assert counting.reads == 20  # nothing changed: nothing read
    clock.advance(5)
    start(jobs, clock, waiting[0])
    notify.scan()
    assert counting.reads == 21 and events_sent(notify, waiting[0]) == ["started"]
