"""Notifications over HTTP: rules on executeNotebook, tasks and web tools, the admin settings, a job's
delivery log, and each bad input as a clear error in the route's envelope (never a 500)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from nbjobs.models.jobs import JobStatus, JobUpdate
from tests.receivers import Receiver
from tests.web.conftest import Caller
from tests.web.test_webtools_admin import publish

SECRET = "0123456789abcdef-secret"
TASKS = "/sharing/rest/community/users/{u}/tasks"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def rules(url: str, events: tuple[str, ...] = ("succeeded",)) -> str:
    return json.dumps([{"id": "hook", "events": list(events), "url": url, "secret": SECRET}])


def finish(nb, clock, job_id: str) -> None:
    assert nb.store.claim(job_id, 1, "host/1", clock(), 60_000) is not None
    nb.store.transition(job_id, JobStatus.COMPLETED, clock(), attempt=1, update=JobUpdate(end_time=clock()))


def test_a_submit_with_a_webhook_rule_is_delivered_and_its_log_is_readable(
    alice, admin, bob, nb, clock, receiver
):
    admin.post("/admin/notifications/settings/edit", allowList='["127.0.0.1"]')
    item = alice.add_notebook()
    answer = alice.execute(item, notifications=rules(receiver.url))
    job_id = answer["jobId"]
    finish(nb, clock, job_id)
    nb.housekeeper.run_now("notify-scan")
    nb.notifications.pump(wait=True)
    log = alice.get(f"/admin/notebooks/jobs/{job_id}/notifications").json()
    assert log["rules"] == [
        {"id": "hook", "events": ["succeeded"], "url": receiver.url, "secret": "********"}
    ]
    (delivery,) = log["deliveries"]
    assert delivery["status"] == "sent" and delivery["event"] == "succeeded"
    assert delivery["idempotencyKey"] == f"{job_id}:hook:succeeded"
    assert [a["ok"] for a in delivery["attemptLog"]] == [True]
    assert json.loads(receiver.received[0].body)["job"]["status"] == "COMPLETED"
    assert (
        admin.get(f"/admin/notebooks/jobs/{job_id}/notifications").json()["deliveries"][0]["id"]
        == delivery["id"]
    )
    assert bob.get(f"/admin/notebooks/jobs/{job_id}/notifications").json()["error"]["code"] == 404
    every = admin.get("/admin/notifications/deliveries", status="sent").json()["deliveries"]
    assert [d["id"] for d in every] == [delivery["id"]]


@pytest.mark.parametrize(
    ("notifications", "message"),
    [
        ("{oops", "notifications is not JSON"),
        ('[{"events": ["exploded"], "email": "a@example.com"}]', "unknown event 'exploded'"),
        (
            '[{"events": ["failed"], "url": "http://127.0.0.1:9/x", "secret": "0123456789abcdef"}]',
            "allowList",
        ),
        (
            '[{"events": ["failed"], "url": "http://169.254.169.254/", "secret": "0123456789abcdef"}]',
            "private",
        ),
        ('[{"events": ["failed"], "url": "https://example.com/"}]', "secret is required"),
    ],
)
def test_bad_rules_on_submit_are_a_400_and_no_job_is_made(alice, nb, notifications, message):
    item = alice.add_notebook()
    answer = alice.execute(item, notifications=notifications)
    assert answer["error"]["code"] == 400, answer
    assert message in answer["error"]["message"]
    assert nb.store.count() == 0


def test_a_tasks_rules_are_shown_and_copied_to_each_runs_job(alice, admin, nb, clock, receiver):
    admin.post("/admin/notifications/settings/edit", allowList="127.0.0.1")
    item = alice.add_notebook()
    body = {"title": "t", "type": "ExecuteNotebook", "itemId": item, "minute": "*/1", "hour": "*",
            "dayOfMonth": "*", "month": "*", "dayOfWeek": "?", "notifications": rules(receiver.url)}  # fmt: skip
    task_id = alice.post(TASKS.format(u="alice") + "/createTask", **body).json()["taskId"]
    task = alice.get(TASKS.format(u="alice") + f"/{task_id}").json()
    assert (
        task["notifications"][0]["url"] == receiver.url and task["notifications"][0]["secret"] == "********"
    )
    bad = alice.post(TASKS.format(u="alice") + f"/{task_id}/update", notifications='[{"events": []}]').json()
    assert bad["error"]["code"] == 400 and "events" in bad["error"]["message"]
    clock.advance(60_000)
    nb.scheduler.tick()
    (run,) = alice.get(TASKS.format(u="alice") + f"/{task_id}/runs").json()["runs"]
    log = alice.get(f"/admin/notebooks/jobs/{run['jobId']}/notifications").json()
    assert [r["id"] for r in log["rules"]] == ["hook"]
    cleared = alice.post(TASKS.format(u="alice") + f"/{task_id}/update", notifications="[]").json()
    assert cleared["success"] is True
    assert alice.get(TASKS.format(u="alice") + f"/{task_id}").json()["notifications"] == []


def test_a_web_tools_rules_are_given_to_each_calls_job(alice, admin, nb, receiver):
    admin.post("/admin/notifications/settings/edit", allowList="127.0.0.1")
    hook = json.loads(rules(receiver.url, ("failed",)))
    name = publish(alice, alice.add_notebook("webtool.ipynb"), "Circle Area", notifications=hook)["itemId"]
    service = alice.get(f"/admin/services/{name}.GPServer").json()
    assert service["jsonProperties"]["notifications"][0]["events"] == ["failed"]
    task = service["jsonProperties"]["tasks"][0]["name"]
    job_id = alice.post(f"/rest/services/{name}/GPServer/{task}/submitJob", radius="2", when="0").json()[
        "jobId"
    ]
    assert [r["id"] for r in nb.notifications.rules_of_job(nb.users.get("alice").principal(), job_id)] == [
        "hook"
    ]
    refused = publish(
        alice, alice.add_notebook("webtool_trivial.ipynb"), "Other", notifications=[{"events": 1}]
    )
    assert refused["error"]["code"] == 400 and "events" in refused["error"]["message"]


def test_smtp_settings_edit_checks_its_input_and_hides_the_password(admin, alice):
    smtp = {
        "host": "mail.example.com",
        "port": 587,
        "security": "starttls",
        "username": "nb",
        "password": "pw",
    }
    edited = admin.post("/admin/notifications/settings/edit", smtp=json.dumps(smtp)).json()
    assert edited["smtp"]["passwordSet"] is True and "password" not in json.dumps(edited)
    for bad, message in [
        ('{"port": 70000}', "smtp.port"),
        ('{"security": "tls"}', "smtp.security"),
        ("[1, 2]", "JSON object"),
        ("{nope", "not valid JSON"),
    ]:
        answer = admin.post("/admin/notifications/settings/edit", smtp=bad).json()
        assert answer["error"]["code"] == 400 and message in answer["error"]["message"], (bad, answer)
    answer = admin.post("/admin/notifications/settings/edit", allowList="not a host!").json()
    assert answer["error"]["code"] == 400 and "allow-list entry" in answer["error"]["message"]
    assert admin.get("/admin/notifications/deliveries", status="lost").json()["error"]["code"] == 400
    assert admin.get("/admin/notifications/deliveries", num="0").json()["error"]["code"] == 400
    assert alice.get("/admin/notifications/settings").json()["error"]["code"] == 403


def test_a_test_message_reports_the_smtp_failure_in_its_answer(admin, receiver):
    answer = admin.post("/admin/notifications/test", email="ops@example.com").json()
    assert answer["status"] == "failed" and "no SMTP server is configured" in answer["detail"]
    admin.post("/admin/notifications/settings/edit", allowList="127.0.0.1")
    sent = admin.post("/admin/notifications/test", url=receiver.url, secret=SECRET).json()
    assert sent == {"status": "success", "detail": "HTTP 200"}
    assert admin.post("/admin/notifications/test").json()["error"]["code"] == 400
