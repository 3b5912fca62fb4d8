"""Notifications over HTTP: rules on executeNotebook, tasks and web tools, the admin settings, a job's
delivery log, and each bad input as a clear error in the route's envelope (never a 500)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from nbjobs.models.jobs import JobStatus, JobUpdate
from tests.receivers import Receiver
from tests.web.test_webtools_admin import publish

SECRET = "0123456789abcdef-secret"
TASKS = "/sharing/rest/community/users/{u}/tasks"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def err(answer: dict) -> tuple[int, str]:
    """(code, message) of either envelope: the admin API's or the portal's."""
    if "error" in answer:
        return answer["error"]["code"], answer["error"]["message"] + " ".join(
            answer["error"].get("details", [])
        )
    assert answer.get("status") == "error", answer
    return answer["code"], " ".join(answer["messages"])


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
    assert err(bob.get(f"/admin/notebooks/jobs/{job_id}/notifications").json())[0] == 404
    page = alice.client.get(
        f"/arcgis/admin/notebooks/jobs/{job_id}/notifications", params={"f": "html", "token": alice.token}
    )
    assert page.headers["content-type"].startswith("text/html") and delivery["id"] in page.text
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
    code, text = err(answer)
    assert code == 400 and message in text, answer
    assert nb.store.count() == 0


def test_a_tasks_rules_are_shown_and_copied_to_each_runs_job(alice, admin, nb, clock, receiver):
    admin.post("/admin/notifications/settings/edit", allowList="127.0.0.1")
    item = alice.add_notebook()
    schedule = {"minute": "*/1", "hour": "*", "dayOfMonth": "*", "month": "*", "dayOfWeek": "?"}
    body = {
        "title": "t",
        "type": "ExecuteNotebook",
        "itemId": item,
        **schedule,
        "notifications": rules(receiver.url),
    }
    task_id = alice.post(TASKS.format(u="alice") + "/createTask", **body).json()["taskId"]
    task = alice.get(TASKS.format(u="alice") + f"/{task_id}").json()
    assert (
        task["notifications"][0]["url"] == receiver.url and task["notifications"][0]["secret"] == "********"
    )
    bad = alice.post(TASKS.format(u="alice") + f"/{task_id}/update", notifications='[{"events": []}]').json()
    assert err(bad)[0] == 400 and "events" in err(bad)[1]
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
    assert [r.rule_id for r in nb.notifications.rules_of_job(nb.users.get("alice").principal(), job_id)] == [
        "hook"
    ]
    refused = publish(
        alice, alice.add_notebook("webtool_trivial.ipynb"), "Other", notifications=[{"events": 1}]
    )
    assert err(refused)[0] == 400 and "events" in err(refused)[1]


def test_smtp_settings_edit_checks_its_input_and_hides_the_password(admin, alice):
    smtp = {
        "host": "mail.example.com",
        "port": 587,
        "security": "starttls",
        "username": "nb",
        "password": "pw",
    }
    edited = admin.post("/admin/notifications/settings/edit", smtp=json.dumps(smtp)).json()
    assert edited["smtp"]["passwordSet"] is True and '"password"' not in json.dumps(edited)
    for bad, message in [
        ('{"port": 70000}', "smtp.port"),
        ('{"security": "tls"}', "smtp.security"),
        ("[1, 2]", "JSON object"),
        ("{nope", "not valid JSON"),
    ]:
        answer = admin.post("/admin/notifications/settings/edit", smtp=bad).json()
        code, text = err(answer)
        assert code == 400 and message in text, (bad, answer)
    answer = admin.post("/admin/notifications/settings/edit", allowList="not a host!").json()
    assert err(answer)[0] == 400 and "allow-list entry" in err(answer)[1]
    assert err(admin.get("/admin/notifications/deliveries", status="lost").json())[0] == 400
    assert err(admin.get("/admin/notifications/deliveries", num="0").json())[0] == 400
    assert err(alice.get("/admin/notifications/settings").json())[0] == 403


def test_a_test_message_reports_the_smtp_failure_in_its_answer(admin, receiver):
    answer = admin.post("/admin/notifications/test", email="ops@example.com").json()
    assert answer["status"] == "failed" and "no SMTP server is configured" in answer["detail"]
    admin.post("/admin/notifications/settings/edit", allowList="127.0.0.1")
    sent = admin.post("/admin/notifications/test", url=receiver.url, secret=SECRET).json()
    assert sent == {"status": "success", "detail": "HTTP 200"}
    assert err(admin.post("/admin/notifications/test").json())[0] == 400


def test_the_job_page_links_to_its_delivery_log(alice):
    item_id = alice.add_notebook()
    job_id = alice.execute(item_id)["jobId"]
    page = alice.client.get(f"/arcgis/admin/notebooks/jobs/{job_id}", params={"token": alice.token}).text
    assert f"href='/arcgis/admin/notebooks/jobs/{job_id}/notifications'" in page
    log = alice.client.get(
        f"/arcgis/admin/notebooks/jobs/{job_id}/notifications", params={"token": alice.token}
    )
    assert log.status_code == 200 and "text/html" in log.headers["content-type"]
