"""Notifications end to end: a real kernel job whose cell raises mails its traceback to aiosmtpd; and
`kill -9` of `nbjobs serve` between a job's end and its webhook's delivery: delivered once after restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from nbjobs.models.jobs import ENDED, JobStatus
from nbjobs.models.notifications import DeliveryStatus
from nbjobs.roots.server import Server
from nbjobs.service.automation.webhooks import check_signature
from nbjobs.service.notifications.webhook import SIGNATURE_HEADER
from nbjobs.settings import load_settings
from tests.receivers import Receiver, SmtpServer

from .conftest import ADMIN, wait_for
from .test_crash import NBJOBS, free_port, wait_until

pytestmark = [pytest.mark.kernel]
SECRET = "kill-nine-secret-0123"


def test_a_real_job_whose_cell_raises_mails_the_traceback_and_the_executed_notebook(make_app, golden):
    smtp = SmtpServer().start()
    try:
        app = make_app(notify_interval_seconds=0.1)
        app.notifications.update_settings(
            ADMIN, smtp={"host": "127.0.0.1", "port": smtp.port, "security": "none", "timeoutSeconds": 5}
        )
        app.start()
        rules = app.notifications.parse(
            [{"events": ["failed"], "email": "ops@example.com", "attachNotebook": True}]
        )
        job = app.service.submit(ADMIN, golden("raises.ipynb"))
        app.notifications.attach(job, rules)
        ended = wait_for(app, job.job_id, lambda j: j.status in ENDED)
        assert ended.status == JobStatus.FAILED
        wait_until(lambda: smtp.handler.messages, 60, "the failure mail")
        mailed = time.time() * 1000
        (message,) = smtp.handler.messages
        assert message["Subject"] == f"[nbjobs] job {job.job_id} failed (cell_error)"
        text, attachment = [p for p in message.walk() if not p.is_multipart()]
        body = text.get_payload(decode=True).decode()
        assert "Failing cell: 1" in body
        assert "ValueError: boom at cell 1" in body and "Traceback" in body and "\x1b" not in body
        html = attachment.get_payload(decode=True).decode()
        assert attachment.get_filename() == f"{job.job_id}.html" and "boom at cell 1" in html
        wait_until(  # the attempt is written right after the SMTP server's answer
            lambda: app.notifications.store.deliveries(job.job_id)[0].status == DeliveryStatus.SENT,
            10,
            "the log",
        )
        (delivery,) = app.notifications.store.deliveries(job.job_id)
        assert delivery.attempts == 1
        print(f"\nfailure mail received {mailed - ended.end_time:.0f} ms after the job ended")
    finally:
        smtp.stop()


def _serve(data_dir: Path, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "NBJOBS_POLL_SECONDS": "0.2",
        "NBJOBS_ADMIN_PASSWORD": "notify-test-password",
        "NBJOBS_NOTIFY_INTERVAL_SECONDS": "0.2",
        "NBJOBS_NOTIFY_RETRY_BASE_SECONDS": "0.5",
        "NBJOBS_NOTIFY_RETRY_MAX_SECONDS": "1",
        "NBJOBS_NOTIFY_TIMEOUT_SECONDS": "1",
        "NBJOBS_NOTIFY_ALLOW_LIST": "127.0.0.1",
    }
    args = [NBJOBS, "serve", "--data-dir", str(data_dir), "--workers", "1", "--port", str(free_port())]
    args.append("--insecure-http")
    with log.open("ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=data_dir.parent
        )


@pytest.mark.slow
def test_kill_9_between_a_jobs_end_and_its_delivery_delivers_it_once_after_restart(tmp_path, golden):
    data_dir = tmp_path / "data"
    log = tmp_path / "server.log"
    view = Server.from_settings(
        load_settings({}, data_dir=data_dir, workers=0, notify_allow_list="127.0.0.1")
    )  # the test's own view of the store
    view.prepare()
    holder = socket.socket()  # the receiver's port, bound but not listening: every attempt is refused,
    holder.bind(("127.0.0.1", 0))  # and no server started meanwhile can be given it
    port = holder.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    job = view.service.submit(ADMIN, golden("trivial.ipynb"))
    view.notifications.attach(
        job, view.notifications.parse([{"id": "hook", "events": ["succeeded"], "url": url, "secret": SECRET}])
    )
    server = _serve(data_dir, log)
    receiver = None
    try:
        wait_for(view, job.job_id, lambda j: j.status == JobStatus.COMPLETED, timeout=90)

        def failed_attempts() -> int:
            deliveries = view.notifications.store.deliveries(job.job_id)
            return deliveries[0].attempts if deliveries else 0

        wait_until(lambda: failed_attempts() >= 2, 60, "two refused attempts")
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        (delivery,) = view.notifications.store.deliveries(job.job_id)
        assert delivery.status == DeliveryStatus.PENDING, delivery
        holder.close()
        receiver = Receiver().start(port)
        server = _serve(data_dir, log)
        wait_until(
            lambda: view.notifications.store.deliveries(job.job_id)[0].status == DeliveryStatus.SENT,
            60,
            "the delivery after restart",
        )
        time.sleep(2)  # a second send would come within the next scan/pump rounds
        attempts = view.notifications.store.attempts(
            view.notifications.store.deliveries(job.job_id)[0].delivery_id
        )
        assert len(receiver.received) == 1, attempts
        (request,) = receiver.received
        check_signature(SECRET, request.body, request.headers, ("x-nbjobs-signature-256",))
        assert request.headers["idempotency-key"] == f"{job.job_id}:hook:succeeded"
        assert json.loads(request.body)["idempotencyKey"] == f"{job.job_id}:hook:succeeded"
        (delivery,) = view.notifications.store.deliveries(job.job_id)
        attempts = view.notifications.store.attempts(delivery.delivery_id)
        assert [a.ok for a in attempts][-1] is True and not any(a.ok for a in attempts[:-1])
        assert "ConnectionRefusedError" in attempts[0].detail, attempts
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
        if receiver is not None:
            receiver.stop()
        view.store.close()


def test_a_retried_job_notifies_its_final_outcome_once_and_each_failed_attempt_when_asked(
    make_app, golden, tmp_path
):
    """Retries (docs/jobs.md) and notifications together: a kernel that dies on attempt 1 is run again;
    a rule on the final outcome hears once (succeeded), a rule that asks for attemptFailed also hears
    about attempt 1, with that attempt's failure, under its own idempotency key."""
    from nbjobs.models.jobs import RetryPolicy
    from nbjobs.models.parameters import parse_parameters

    receiver = Receiver().start()
    try:
        app = make_app(notify_interval_seconds=0.1)
        app.notifications.update_settings(ADMIN, allow_list=["127.0.0.1"])
        app.start()
        final, every = (
            app.notifications.parse([{"events": events, "url": receiver.url + path, "secret": SECRET}])
            for events, path in (
                (["failed", "succeeded"], "/final"),
                (["attemptFailed", "succeeded"], "/every"),
            )
        )
        params = parse_parameters({"marker": str(tmp_path / "runs"), "die_first": 1})
        job = app.service.submit(
            ADMIN, golden("flaky.ipynb"), parameters=params, retry=RetryPolicy(max_retries=1)
        )
        app.notifications.attach(job, final + every)
        ended = wait_for(app, job.job_id, lambda j: j.status in ENDED)
        assert ended.status == JobStatus.COMPLETED and ended.attempt == 2
        wait_until(lambda: len(receiver.received) >= 3, 60, "three deliveries")
        time.sleep(0.5)  # nothing more may come
        got = sorted((r.path, json.loads(r.body)["event"]) for r in receiver.received)
        assert got == [
            ("/hook/every", "attemptFailed"),
            ("/hook/every", "succeeded"),
            ("/hook/final", "succeeded"),
        ]
        [attempt_note] = [
            json.loads(r.body) for r in receiver.received if json.loads(r.body)["event"] == "attemptFailed"
        ]
        assert attempt_note["job"]["failedAttempt"]["attempt"] == 1
        assert attempt_note["job"]["failedAttempt"]["failure"]["reason"] == "kernel_died"
        assert attempt_note["idempotencyKey"].endswith(":attemptFailed:1")
        for r in receiver.received:  # each signed as the inbound receivers verify (raises if not)
            check_signature(SECRET, r.body, r.headers, (SIGNATURE_HEADER.lower(),))
    finally:
        receiver.stop()
