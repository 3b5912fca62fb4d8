"""The portal tasks API over HTTP: ArcGIS shapes, portal error envelopes, the scheduler stepped by hand."""

from __future__ import annotations

import json

from tests.web.conftest import Caller

BASE = "/sharing/rest/community/users/{u}/tasks"
MINUTE = 60_000


def _create(caller: Caller, item_id: str, **fields: object) -> dict:
    parameters = json.dumps({"notebookParameters": json.dumps({"name": "Ada"})})
    body = {"title": "every minute", "type": "ExecuteNotebook", "itemId": item_id, "minute": "*/1",
            "hour": "*", "dayOfMonth": "*", "month": "*", "dayOfWeek": "?", "maxOccurrences": 30,
            "parameters": parameters, **fields}  # fmt: skip
    return caller.post(BASE.format(u=caller.username) + "/createTask", **body).json()


def test_create_list_get_runs_in_arcgis_shapes(alice: Caller, nb, clock):
    item_id = alice.add_notebook()
    created = _create(alice, item_id)
    assert created["success"] is True and len(created["taskId"]) == 32
    task_id = created["taskId"]
    listing = alice.get(BASE.format(u="alice")).json()
    assert listing["total"] == 1 and listing["nextStart"] == -1 and listing["activeTasksAvailable"] == 19
    task = alice.get(BASE.format(u="alice") + f"/{task_id}").json()
    assert task["cronSchedule"] == {
        "minute": "*/1",
        "hour": "*",
        "dayOfMonth": "*",
        "month": "*",
        "dayOfWeek": "?",
    }
    assert task["runIntervalSeconds"] == 60 and task["taskState"] == "active" and task["active"] is True
    assert task["parameters"]["notebookParameters"] == '{"name": "Ada"}' and task["userId"] == "alice"
    assert task["type"] == "ExecuteNotebook" and task["itemId"] == item_id and task["maxOccurrences"] == 30
    clock.advance(MINUTE)
    nb.scheduler.tick()
    runs = alice.get(BASE.format(u="alice") + f"/{task_id}/runs").json()["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "executing" and runs[0]["task"]["id"] == task_id
    job = alice.get(f"/admin/notebooks/jobs/{runs[0]['jobId']}").json()
    assert job["inputs"]["taskId"] == task_id and job["inputs"]["runId"] == runs[0]["runId"]
    assert job["inputs"]["notebookParameters"] == {"name": "Ada"}
    run_url = BASE.format(u="alice") + f"/{task_id}/runs/{runs[0]['runId']}"
    assert alice.post(run_url + "/update", status="failed", result="by hand").json()["success"] is True
    assert alice.get(run_url).json()["result"] == "by hand"
    assert alice.post(run_url + "/delete").json()["success"] is True


def test_filters_enable_disable_update_delete(alice: Caller):
    item_id = alice.add_notebook()
    task_id = _create(alice, item_id)["taskId"]
    other = _create(alice, alice.add_notebook())["taskId"]
    url = BASE.format(u="alice")
    assert alice.post(f"{url}/{task_id}/disable").json()["success"] is True
    assert alice.get(f"{url}/{task_id}").json()["taskState"] == "paused"
    assert [t["id"] for t in alice.get(url, active="false").json()["tasks"]] == [task_id]
    assert [t["id"] for t in alice.get(url, itemId=item_id).json()["tasks"]] == [task_id]
    assert alice.get(url, types="GPService").json()["tasks"] == []
    page = alice.get(url, num=1, start=1).json()
    assert page["num"] == 1 and page["nextStart"] == 2 and page["total"] == 2
    assert alice.post(f"{url}/{task_id}/enable").json()["success"] is True
    assert alice.post(f"{url}/{task_id}/update", hour="6", minute="0", isActive="false").json()["success"]
    changed = alice.get(f"{url}/{task_id}").json()
    assert changed["cronSchedule"]["hour"] == "6" and changed["active"] is False
    assert alice.post(f"{url}/{other}/delete").json() == {"success": True, "taskId": other}
    assert alice.get(f"{url}/{other}").json()["error"]["code"] == 404


def test_bad_input_answers_the_portal_error_envelope(alice: Caller, bob: Caller, viewer: Caller):
    item_id = alice.add_notebook()
    cases = [
        ({"minute": "61"}, "Invalid cron field minute '61'"),
        ({"dayOfWeek": "MON#9", "dayOfMonth": "?"}, "x#n needs n from 1 to 5"),
        ({"startDate": 2_000_000_000_000, "endDate": 1_900_000_000_000}, "is after endDate"),
        ({"type": "ExecuteReport"}, "Unsupported task type 'ExecuteReport'"),
        ({"itemId": bob.add_notebook()}, "Item does not exist or is inaccessible."),
        ({"parameters": "{not json"}, "not valid JSON"),
        ({"overlapPolicy": "pile-up"}, "Invalid overlapPolicy"),
    ]
    for fields, message in cases:
        answer = _create(alice, item_id, **fields)
        assert "error" in answer, (fields, answer)
        assert message in answer["error"]["message"], (fields, answer)
    assert alice.get(BASE.format(u="alice")).json()["total"] == 0
    refused = _create(viewer, viewer.add_notebook())
    assert refused["error"]["code"] == 403 and "scheduleNotebooks" in " ".join(refused["error"]["details"])
    assert bob.get(BASE.format(u="alice")).json()["error"]["code"] == 403


def test_twenty_one_active_tasks(alice: Caller):
    item_id = alice.add_notebook()
    for _ in range(20):
        assert _create(alice, item_id)["success"] is True
    answer = _create(alice, item_id)
    assert "maximum number of active tasks (20)" in answer["error"]["message"]
    assert alice.get(BASE.format(u="alice"), num=100).json()["activeTasksAvailable"] == 0
