"""The app's tasks pages in-process over the real services: the list, the form's cron builder (composed on
the server), the "next 5 runs" preview (equal to CronSchedule and to what the scheduler stores and fires,
the scheduler stepped by hand), edit, pause, resume, delete, run history, bad input with the service's
message and nothing stored, another user's task answering like an unknown one, CSRF-less POSTs refused."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from nbjobs.clock import ManualClock
from nbjobs.models.automation import RunStatus, TaskState
from nbjobs.roots.server import Server
from nbjobs.service.automation.cron import CronSchedule
from nbjobs.service.automation.tasks import TaskSpec
from nbjobs.web.ui.tasks import iso
from tests.web.test_ui_app import APP, ORIGIN, app_client, sign_in, upload  # noqa: F401  (fixture)

TASKS = APP + "/tasks"
MINUTE = 60_000


def _item(client: TestClient, csrf: str) -> str:
    answer = upload(client, csrf)
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].rsplit("/", 1)[-1]


def _form(csrf: str, item_id: str, **fields: str) -> dict[str, str]:
    form = {"csrf": csrf, "title": "nightly report", "itemId": item_id, "repeat": "daily", "atTime": "06:30",
            "timeZone": "UTC", "notebookParameters": "", "isActive": "true"}  # fmt: skip
    form.update(fields)
    return form


def _post(client: TestClient, url: str, data: dict[str, str]):
    return client.post(url, data=data, headers=ORIGIN, follow_redirects=False)


def _create(client: TestClient, csrf: str, item_id: str, **fields: str) -> str:
    answer = _post(client, TASKS + "/new", _form(csrf, item_id, **fields))
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].rsplit("/", 1)[-1]


def _text(page: str) -> str:
    """The page's text, tags and entities gone, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _error_of(page: str, field_id: str) -> str:
    found = re.search(rf'<span class="error" id="{field_id}-e"[^>]*>([^<]*)</span>', page)
    assert found, f"no error span for {field_id}"
    return html.unescape(found.group(1))


def _direct(schedule: CronSchedule, after: int, count: int = 5) -> list[int]:
    out: list[int] = []
    while len(out) < count:
        fire = schedule.next_after(after)
        assert fire is not None
        out.append(fire)
        after = fire
    return out


def test_create_from_the_builder_then_the_list_and_the_task_page(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    form = app_client.get(TASKS + "/new", params={"itemId": item})
    assert form.status_code == 200
    assert f'<option value="{item}" selected>' in form.text  # ?itemId= chooses the notebook
    assert (
        "name = nobody, count = 0, ratio = 0.0, flag = false, items = [], config = {}, when = null"
        in _text(form.text)
    )  # the notebook's parameters cell, as a hint
    task_id = _create(app_client, csrf, item, timeZone="Europe/Berlin", notebookParameters='{"name": "Ada"}',
                      executionTimeoutInMinutes="7")  # fmt: skip
    task = nb.tasks.find(nb.users.get("alice"), task_id)
    assert (task.minute, task.hour, task.day_of_month, task.month, task.day_of_week) == (
        "30",
        "6",
        "*",
        "*",
        "?",
    )
    assert task.time_zone == "Europe/Berlin" and task.title == "nightly report" and task.item_id == item
    assert task.parameters["notebookParameters"] == {"name": "Ada"}
    assert task.parameters["executionTimeoutInMinutes"] == 7 and task.state == TaskState.ACTIVE
    listing = _text(app_client.get(TASKS).text)
    assert "nightly report" in listing and "Every day at 06:30 30 6 * * ? Europe/Berlin" in listing
    assert "active" in listing and "none yet" in listing and "Owner" not in listing
    page = _text(app_client.get(f"{TASKS}/{task_id}").text)
    assert "Every day at 06:30 ( 30 6 * * ? , Europe/Berlin)" in page and "Run history No runs yet." in page
    assert "Pause task" in page and "Delete task and its run history" in page


def test_the_preview_is_cron_schedule_and_what_the_scheduler_stores_and_fires(
    app_client: TestClient,  # noqa: F811
    nb: Server,
    clock: ManualClock,
) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    builder = {"repeat": "weekly", "day.MON": "true", "day.FRI": "true", "atTime": "07:15",
               "timeZone": "America/New_York"}  # fmt: skip
    answer = app_client.get(TASKS + "/preview", params={**builder, "f": "json"}).json()
    assert answer["cron"] == "15 7 ? * MON,FRI" and answer["description"] == "Every Monday, Friday at 07:15"
    times = [r["time"] for r in answer["runs"]]
    assert times == _direct(CronSchedule.parse("15", "7", "?", "*", "MON,FRI", "America/New_York"), clock())
    assert answer["runs"][0]["text"].endswith(("EST", "EDT"))
    fragment = app_client.get(TASKS + "/preview", params=builder)  # without f=json: the HTML fragment
    assert fragment.status_code == 200 and all(r["text"] in fragment.text for r in answer["runs"])
    task_id = _create(app_client, csrf, item, **builder)
    alice = nb.users.get("alice")
    assert nb.tasks.find(alice, task_id).next_fire == times[0]  # what the scheduler will fire first
    page = app_client.get(f"{TASKS}/{task_id}").text
    assert all(r["text"] in page for r in answer["runs"])
    for when in times[:3]:  # the scheduler fires exactly the previewed occasions
        clock.now = when
        nb.scheduler.tick()
    assert sorted(r.scheduled_for for r in nb.tasks.runs(alice, "alice", task_id)) == times[:3]


def test_run_history_links_each_run_to_its_job(
    app_client: TestClient,  # noqa: F811
    nb: Server,
    clock: ManualClock,
) -> None:
    csrf = sign_in(app_client, "alice")
    task_id = _create(app_client, csrf, _item(app_client, csrf), repeat="minutes", every="1")
    alice = nb.users.get("alice")
    task = nb.tasks.find(alice, task_id)
    assert (task.minute, task.hour) == ("*/1", "*")
    clock.now = task.next_fire
    nb.scheduler.tick()
    clock.advance(MINUTE)
    nb.scheduler.tick()  # the first run's job is still waiting (no workers): this occasion is skipped
    runs = nb.tasks.runs(alice, "alice", task_id)
    assert [r.status for r in runs] == [RunStatus.SKIPPED, RunStatus.EXECUTING]
    page = app_client.get(f"{TASKS}/{task_id}").text
    assert f'href="{APP}/jobs/{runs[1].job_id}"' in page
    text = _text(page)
    assert f"Job {runs[1].job_id} submitted." in text and "skipped" in text and "had not finished" in text
    listing = _text(app_client.get(TASKS).text)
    assert "skipped" in listing  # the last run's status


def test_a_bad_cron_expression_shows_the_parsers_message_and_creates_nothing(
    app_client: TestClient,  # noqa: F811
    nb: Server,
) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    answer = _post(app_client, TASKS + "/new", _form(csrf, item, repeat="custom", cron="61 * * * ?"))
    assert answer.status_code == 400
    assert _error_of(answer.text, "t-cron") == "Invalid cron field minute '61': 61 is outside 0-59."
    assert 'value="61 * * * ?"' in answer.text  # the form keeps what was typed
    short = _post(app_client, TASKS + "/new", _form(csrf, item, repeat="custom", cron="0 9 * *"))
    assert short.status_code == 400 and "has five fields" in _error_of(short.text, "t-cron")
    zone = _post(app_client, TASKS + "/new", _form(csrf, item, timeZone="Mars/Olympus"))
    assert zone.status_code == 400 and _error_of(zone.text, "t-tz").startswith(
        "Unknown time zone 'Mars/Olympus'"
    )
    both = _post(app_client, TASKS + "/new", _form(csrf, item, repeat="custom", cron="0 9 1 * MON"))
    assert both.status_code == 400 and "restrict dayOfMonth or dayOfWeek, not both" in _error_of(
        both.text, "t-cron"
    )
    preview = app_client.get(TASKS + "/preview", params={"repeat": "custom", "cron": "61 * * * ?"})
    assert preview.status_code == 400 and "61 is outside 0-59" in html.unescape(preview.text)
    as_json = app_client.get(
        TASKS + "/preview", params={"repeat": "custom", "cron": "61 * * * ?", "f": "json"}
    )
    message = "Invalid cron field minute '61': 61 is outside 0-59."
    assert as_json.json()["error"] == {"code": 400, "details": [], "message": message}
    button = _post(app_client, TASKS + "/new", {**_form(csrf, item, repeat="hourly", atMinute="75"),
                                                 "preview": "1"})  # fmt: skip
    assert button.status_code == 400
    assert (
        _error_of(button.text, "t-cron")
        == "The minute of the hour must be a whole number from 0 to 59, not '75'."
    )
    assert nb.tasks.visible(nb.users.get("alice")) == []


def test_the_preview_button_re_renders_the_form_with_the_next_runs(
    app_client: TestClient,  # noqa: F811
    nb: Server,
    clock: ManualClock,
) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    data = {**_form(csrf, item, repeat="monthly", dayOfMonth="15", atTime="23:05"), "preview": "1"}
    answer = _post(app_client, TASKS + "/new", data)
    assert answer.status_code == 200
    assert 'value="5 23 15 * ?"' in answer.text and "Every month on day 15 at 23:05" in answer.text
    for fire in _direct(CronSchedule.parse("5", "23", "15", "*", "?"), clock()):
        assert f'datetime="{iso(fire)}"' in answer.text
    assert nb.tasks.visible(nb.users.get("alice")) == []


def test_missing_title_bad_parameters_another_users_notebook_and_the_task_limit(
    app_client: TestClient,  # noqa: F811
    nb: Server,
) -> None:
    bob_csrf = sign_in(app_client, "bob")
    bobs_item = _item(app_client, bob_csrf)
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    untitled = _post(app_client, TASKS + "/new", _form(csrf, item, title=""))
    assert untitled.status_code == 400 and _error_of(untitled.text, "t-title") == "Give the task a title."
    bad_json = _post(app_client, TASKS + "/new", _form(csrf, item, notebookParameters="{name: 1"))
    assert bad_json.status_code == 400
    assert "notebookParameters must be a JSON object; it is not valid JSON." in html.unescape(bad_json.text)
    not_object = _post(app_client, TASKS + "/new", _form(csrf, item, notebookParameters="[1, 2]"))
    assert not_object.status_code == 400 and "JSON object" in html.unescape(not_object.text)
    others = _post(app_client, TASKS + "/new", _form(csrf, bobs_item))
    assert others.status_code == 400 and "Item does not exist or is inaccessible." in others.text
    as_json = _post(app_client, TASKS + "/new", {**_form(csrf, bobs_item), "f": "json"})
    assert as_json.json()["error"]["message"] == "Item does not exist or is inaccessible."
    alice = nb.users.get("alice")
    assert nb.tasks.visible(alice) == []
    nb.tasks.max_active = 1
    _create(app_client, csrf, item)
    over = _post(app_client, TASKS + "/new", _form(csrf, item, title="one too many"))
    assert over.status_code == 400 and "maximum number of active tasks (1)" in over.text
    assert [t.title for t in nb.tasks.visible(alice)] == ["nightly report"]


def test_edit_pause_resume_and_delete(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    task_id = _create(
        app_client, csrf, item, repeat="weekly", atTime="18:00", **{"day.TUE": "on", "day.SUN": "on"}
    )
    alice = nb.users.get("alice")
    nb.tasks.update(alice, "alice", task_id, TaskSpec(parameters={"notebookParameters": {}, "maxRetries": 2}))
    edit = app_client.get(f"{TASKS}/{task_id}/edit").text
    assert '<option value="weekly" selected>' in edit and 'value="0 18 ? * TUE,SUN"' in edit
    assert re.search(r'name="day.TUE" value="true" checked', edit) and not re.search(
        r'name="day.MON"[^>]*checked', edit
    )
    data = _form(csrf, item, title="renamed", repeat="daily", atTime="08:00", task=task_id)
    saved = _post(app_client, f"{TASKS}/{task_id}/edit", data)
    assert saved.status_code == 303 and saved.headers["location"] == f"{TASKS}/{task_id}"
    task = nb.tasks.find(alice, task_id)
    assert task.title == "renamed" and (task.minute, task.hour, task.day_of_week) == ("0", "8", "?")
    assert task.parameters["maxRetries"] == 2  # what the form does not show is kept
    bad = _post(app_client, f"{TASKS}/{task_id}/edit", _form(csrf, item, repeat="custom", cron="0 25 * * ?"))
    assert bad.status_code == 400 and "25 is outside 0-23" in _error_of(bad.text, "t-cron")
    assert nb.tasks.find(alice, task_id).hour == "8"
    paused = _post(app_client, f"{TASKS}/{task_id}/active", {"csrf": csrf, "active": "false"})
    assert paused.status_code == 303
    task = nb.tasks.find(alice, task_id)
    assert task.state == TaskState.PAUSED and task.next_fire == 0
    page = _text(app_client.get(f"{TASKS}/{task_id}").text)
    assert "Resume task" in page and "None: the task is paused." in page
    _post(app_client, f"{TASKS}/{task_id}/active", {"csrf": csrf, "active": "true"})
    task = nb.tasks.find(alice, task_id)
    assert task.state == TaskState.ACTIVE and task.next_fire > 0
    gone = _post(app_client, f"{TASKS}/{task_id}/delete", {"csrf": csrf})
    assert gone.status_code == 303 and gone.headers["location"] == TASKS
    assert nb.tasks.visible(alice) == []
    assert app_client.get(f"{TASKS}/{task_id}").status_code == 404


def test_another_users_task_answers_like_an_unknown_one(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    bob_csrf = sign_in(app_client, "bob")
    bobs = _create(app_client, bob_csrf, _item(app_client, bob_csrf), title="bob's task")
    before = nb.tasks.store.get(bobs)
    csrf = sign_in(app_client, "alice")
    unknown = "0" * 32
    for suffix in ("", "/edit"):
        theirs = app_client.get(f"{TASKS}/{bobs}{suffix}")
        nothing = app_client.get(f"{TASKS}/{unknown}{suffix}")
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.text.replace(bobs, "ID") == nothing.text.replace(unknown, "ID")
    for action, data in (("/active", {"active": "false"}), ("/delete", {}), ("/edit", _form(csrf, "x"))):
        assert _post(app_client, f"{TASKS}/{bobs}{action}", {"csrf": csrf, **data}).status_code == 404
    preview = app_client.get(TASKS + "/preview", params={"task": bobs, "f": "json"}).json()
    assert preview["error"]["code"] == 404
    as_json = app_client.get(f"{TASKS}/{bobs}", params={"f": "json"}).json()
    assert as_json["error"] == {"code": 404, "message": f"Task '{bobs}' does not exist or is inaccessible.",
                                "details": []}  # fmt: skip
    assert "bob&#39;s task" not in app_client.get(TASKS).text
    assert nb.tasks.store.get(bobs) == before
    sign_in(app_client, "admin")  # an administrator sees everyone's, with the owner
    listing = _text(app_client.get(TASKS).text)
    assert "Everyone's scheduled tasks" in listing and "Owner" in listing and "bob's task" in listing
    assert app_client.get(f"{TASKS}/{bobs}").status_code == 200


def test_posts_without_csrf_are_refused(app_client: TestClient, nb: Server) -> None:  # noqa: F811
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    task_id = _create(app_client, csrf, item)
    form = _form(csrf, item, title="forged")
    del form["csrf"]
    assert _post(app_client, TASKS + "/new", form).status_code == 403
    assert _post(app_client, f"{TASKS}/{task_id}/delete", {}).status_code == 403
    assert [t.title for t in nb.tasks.visible(nb.users.get("alice"))] == ["nightly report"]


def test_a_notebook_page_links_to_scheduling_and_publishing_it(app_client: TestClient) -> None:  # noqa: F811
    csrf = sign_in(app_client, "alice")
    item_id = _item(app_client, csrf)
    page = app_client.get(f"{APP}/notebooks/{item_id}").text
    assert f'href="{TASKS}/new?itemId={item_id}"' in page
    assert f'href="{APP}/webtools?item={item_id}#publish"' in page
    form = app_client.get(f"{TASKS}/new", params={"itemId": item_id}).text
    assert f'<option value="{item_id}" selected>' in form  # the linked notebook is the one chosen
