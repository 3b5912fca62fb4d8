"""Web tools over the GP REST API, with no workers: tests end jobs by hand, so every answer is exact."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from nbjobs.models.jobs import Failure, FailureReason, JobStatus, JobUpdate
from tests.web.conftest import Caller
from tests.web.test_webtools_admin import publish

RECORDS = {"features": [{"attributes": {"n": 1}}, {"attributes": {"n": 2}}]}


@pytest.fixture
def tool(alice: Caller) -> str:
    return publish(alice, alice.add_notebook("webtool.ipynb"), "Circle Area")["itemId"]


def _task(name: str) -> str:
    return f"/rest/services/{name}/GPServer/Circle_Area"


def finish(nb, clock, job_id: str, values: dict) -> None:
    """What the engine records when a run completes with outputs read back."""
    nb.store.transition(job_id, JobStatus.EXECUTING, clock(), update=JobUpdate(start_time=clock()))
    clock.advance(80)
    outputs = {
        k: ({"value": v} if not isinstance(v, Exception) else {"error": f"NameError: {v}"})
        for k, v in values.items()
    }
    nb.store.transition(
        job_id, JobStatus.COMPLETED, clock(), update=JobUpdate(results={"outputValues": outputs})
    )


GOOD = {
    "area": 3.14,
    "label": "c x2",
    "total": 4,
    "big": False,
    "stamp": "2026-01-02T00:00:00+00:00",
    "out_rows": [{"n": 2}],
    "out_shape": {"features": []},
    "out_file": "https://example.com/a.csv",
}


def test_service_and_task_describe_the_tool_in_gp_terms(alice, tool):
    service = alice.get(f"/rest/services/{tool}/GPServer").json()
    assert service["tasks"] == ["Circle_Area"]
    assert service["executionType"] == "esriExecutionTypeAsynchronous"
    assert service["currentVersion"] == 11.3 and service["resultMapServerName"] == ""
    task = alice.get(_task(tool)).json()
    params = {p["name"]: p for p in task["parameters"]}
    assert {n: p["dataType"] for n, p in params.items()} == {
        "radius": "GPDouble",
        "name": "GPString",
        "count": "GPLong",
        "scale_up": "GPBoolean",
        "when": "GPDate",
        "rows": "GPRecordSet",
        "shape": "GPFeatureRecordSetLayer",
        "data_file": "GPDataFile",
        "area": "GPDouble",
        "label": "GPString",
        "total": "GPLong",
        "big": "GPBoolean",
        "stamp": "GPDate",
        "out_rows": "GPRecordSet",
        "out_shape": "GPFeatureRecordSetLayer",
        "out_file": "GPDataFile",
    }
    assert params["radius"]["direction"] == "esriGPParameterDirectionInput"
    assert params["radius"]["displayName"] == "Radius" and params["radius"]["defaultValue"] == 1.0
    assert params["radius"]["parameterType"] == "esriGPParameterTypeOptional"
    assert params["when"]["defaultValue"] == 1767225600000  # the notebook's ISO default, as epoch ms
    assert params["area"]["direction"] == "esriGPParameterDirectionOutput"
    assert alice.post(_task(tool)).json()["name"] == "Circle_Area"  # the ArcGIS client POSTs for the task
    directory = alice.get("/rest/services").json()
    assert directory["services"] == [{"name": tool, "type": "GPServer", "title": "Circle Area"}]


def test_submit_runs_an_execute_notebook_as_web_tool_job_with_converted_inputs(alice, nb, tool):
    answer = alice.post(
        _task(tool) + "/submitJob",
        radius="2.5",
        count="3",
        scale_up="true",
        when="0",
        rows=json.dumps(RECORDS),
        data_file="https://example.com/b.csv",
    ).json()
    assert answer["jobStatus"] == "esriJobSubmitted"
    job = alice.get(f"/admin/notebooks/jobs/{answer['jobId']}").json()
    assert job["type"] == "executeNotebookAsWebTool" and job["status"] == "SUBMITTED"
    assert job["inputs"]["notebookParameters"] == {
        "radius": 2.5,
        "count": 3,
        "scale_up": True,
        "when": "1970-01-01T00:00:00Z",
        "rows": RECORDS,
        "data_file": {"url": "https://example.com/b.csv"},
    }
    assert job["inputs"]["outputNames"][0] == "area" and job["inputs"]["updatePortalItem"] is False
    listing = alice.get("/admin/notebooks/jobs").json()["asyncNotebookJobs"]
    assert listing[0]["name"] == "executeNotebookAsWebTool"


def test_a_succeeded_job_has_typed_results_and_its_inputs(alice, nb, clock, tool):
    job_id = alice.post(_task(tool) + "/submitJob", radius="2", when="86400000").json()["jobId"]
    running = alice.get(f"{_task(tool)}/jobs/{job_id}").json()
    assert running["jobStatus"] == "esriJobSubmitted" and "results" not in running
    finish(nb, clock, job_id, GOOD)
    job = alice.get(f"{_task(tool)}/jobs/{job_id}").json()
    assert job["jobStatus"] == "esriJobSucceeded"
    assert job["results"]["area"] == {"paramUrl": "results/area"}
    assert job["inputs"]["radius"] == {"paramUrl": "inputs/radius"}
    assert job["messages"][-1]["description"].startswith("Succeeded at ")
    base = f"{_task(tool)}/jobs/{job_id}"
    assert alice.get(base + "/results/area").json() == {
        "paramName": "area",
        "dataType": "GPDouble",
        "value": 3.14,
    }
    assert alice.get(base + "/results/stamp").json()["value"] == 1767312000000
    assert alice.get(base + "/results/out_rows").json()["value"] == {"features": [{"attributes": {"n": 2}}]}
    assert alice.get(base + "/results/out_file").json()["value"] == {"url": "https://example.com/a.csv"}
    assert alice.get(base + "/inputs/radius").json() == {
        "paramName": "radius",
        "dataType": "GPDouble",
        "value": 2.0,
    }
    assert alice.get(base + "/inputs/when").json()["value"] == 86400000
    assert alice.get(base + "/inputs/name").json()["value"] == "circle"  # not sent: the notebook's own
    assert alice.get(base + "/results/nope").json()["error"]["code"] == 404


def test_a_missing_required_input_a_wrong_type_and_an_unknown_parameter_are_gp_errors(alice, nb):
    name = publish(alice, alice.add_notebook("webtool_trivial.ipynb"), "Trivial")["itemId"]
    task = f"/rest/services/{name}/GPServer/Trivial"
    missing = alice.post(task + "/submitJob").json()
    assert missing == {
        "error": {"code": 400, "message": "Missing required parameter 'x' (Long).", "details": []}
    }
    wrong = alice.post(task + "/submitJob", x="abc").json()["error"]
    assert wrong["message"] == "Invalid value for parameter 'x' (Long): 'abc' is not an integer"
    unknown = alice.post(task + "/submitJob", x="1", y="2").json()["error"]
    assert unknown["message"] == "Unknown parameter 'y' for task 'Trivial' (its inputs: x)."
    both = alice.post(task + "/submitJob", x="1.5", colour="red").json()["error"]
    assert both["message"] == "Invalid web tool inputs." and len(both["details"]) == 2
    assert alice.post(task + "/submitJob", x="7", **{"env:outSR": "4326", "returnZ": "false"}).json()["jobId"]
    assert nb.store.count() == 1  # nothing was submitted for the bad calls


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("count", "2.5", "'2.5' is not an integer"),
        ("radius", "wide", "'wide' is not a number"),
        ("scale_up", "maybe", "'maybe' is not true or false"),
        ("when", "yesterday", "is not epoch milliseconds or an ISO 8601 date"),
        ("rows", "[1, 2]", 'expected a JSON object with a "features" list'),
        ("shape", "{not json", "is not valid JSON"),
        ("data_file", "ftp://x", 'expected {"url": …}'),
    ],
)
def test_each_type_validates_its_input(alice, tool, field, value, message):
    error = alice.post(_task(tool) + "/submitJob", **{field: value}).json()["error"]
    assert error["code"] == 400 and message in error["message"] and f"'{field}'" in error["message"]


def test_an_output_the_notebook_never_sets_fails_the_job_naming_it(alice, nb, clock, tool):
    job_id = alice.post(_task(tool) + "/submitJob").json()["jobId"]
    finish(nb, clock, job_id, {**GOOD, "total": NameError("name 'total' is not defined")})
    job = alice.get(f"{_task(tool)}/jobs/{job_id}").json()
    assert job["jobStatus"] == "esriJobFailed" and "results" not in job
    errors = [m["description"] for m in job["messages"] if m["type"] == "esriJobMessageTypeError"]
    assert errors[0].startswith("Output parameter 'total' was not set by the notebook (NameError")
    assert errors[-1] == "Failed to execute (Circle_Area)."
    assert alice.get(f"{_task(tool)}/jobs/{job_id}/results/area").json()["error"]["code"] == 400


def test_an_output_of_the_wrong_type_fails_the_job(alice, nb, clock, tool):
    job_id = alice.post(_task(tool) + "/submitJob").json()["jobId"]
    finish(nb, clock, job_id, {**GOOD, "total": "four"})
    job = alice.get(f"{_task(tool)}/jobs/{job_id}").json()
    assert job["jobStatus"] == "esriJobFailed"
    assert "Invalid output 'total' (Long): expected an int, got a str." in [
        m["description"] for m in job["messages"]
    ]


def test_a_notebook_that_raises_is_esri_job_failed_with_the_cell_error(alice, nb, clock, tool):
    job_id = alice.post(_task(tool) + "/submitJob").json()["jobId"]
    failure = Failure(
        FailureReason.CELL_ERROR,
        "ValueError: boom",
        cell_index=1,
        ename="ValueError",
        evalue="boom",
        traceback=("\x1b[0;31mValueError\x1b[0m: boom",),
    )
    nb.store.transition(job_id, JobStatus.FAILED, clock(), update=JobUpdate(failure=failure))
    job = alice.get(f"{_task(tool)}/jobs/{job_id}").json()
    assert job["jobStatus"] == "esriJobFailed"
    errors = [m["description"] for m in job["messages"] if m["type"] == "esriJobMessageTypeError"]
    assert errors[:2] == ["ValueError: boom (cell 1)", "ValueError: boom"]


def test_timeout_and_cancel_have_their_gp_words(alice, nb, clock, tool):
    timed = alice.post(_task(tool) + "/submitJob").json()["jobId"]
    nb.store.transition(
        timed,
        JobStatus.FAILED,
        clock(),
        update=JobUpdate(failure=Failure(FailureReason.TIMEOUT, "timed out")),
    )
    assert alice.get(f"{_task(tool)}/jobs/{timed}").json()["jobStatus"] == "esriJobTimedOut"
    waiting = alice.post(_task(tool) + "/submitJob").json()["jobId"]
    cancelled = alice.post(f"{_task(tool)}/jobs/{waiting}/cancel").json()
    assert cancelled == {"jobId": waiting, "jobStatus": "esriJobCancelled"}
    assert alice.get(f"/admin/notebooks/jobs/{waiting}").json()["status"] == "CANCELLED"
    again = alice.post(f"{_task(tool)}/jobs/{waiting}/cancel").json()
    assert again["error"]["message"] == f"Unable to cancel job :[{waiting}]"


def test_execute_waits_for_the_end_and_answers_results(alice, nb, clock, tool):
    def complete_when_submitted() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            jobs, _ = nb.service.list(nb.users.get("alice").principal())
            if jobs:
                finish(nb, clock, jobs[0].job_id, GOOD)
                return
            time.sleep(0.01)

    helper = threading.Thread(target=complete_when_submitted)
    helper.start()
    answer = alice.post(_task(tool) + "/execute", radius="1").json()
    helper.join()
    assert {r["paramName"]: r["value"] for r in answer["results"]}["area"] == 3.14
    assert answer["results"][0] == {"paramName": "area", "dataType": "GPDouble", "value": 3.14}
    assert answer["jobId"].startswith("j")


def test_execute_answers_with_the_job_to_poll_when_the_run_is_slow(alice, nb, tool):
    # the routes read the app's services (the Server's own settings are not what they see)
    state = alice.client.app.state
    state.services = dataclasses.replace(
        state.services, settings=nb.settings.with_overrides(webtool_execute_wait_seconds=0.05)
    )
    answer = alice.post(_task(tool) + "/execute").json()
    assert answer["jobStatus"] == "esriJobSubmitted" and answer["jobId"].startswith("j")
    assert alice.get(f"{_task(tool)}/jobs/{answer['jobId']}").json()["jobId"] == answer["jobId"]


def test_execute_of_a_failing_run_is_a_500_gp_error_with_the_messages(alice, nb, clock, tool):
    def fail_when_submitted() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            jobs, _ = nb.service.list(nb.users.get("alice").principal())
            if jobs:
                nb.store.transition(
                    jobs[0].job_id,
                    JobStatus.FAILED,
                    clock(),
                    update=JobUpdate(failure=Failure(FailureReason.CELL_ERROR, "KeyError: 'x'")),
                )
                return
            time.sleep(0.01)

    helper = threading.Thread(target=fail_when_submitted)
    helper.start()
    answer = alice.post(_task(tool) + "/execute").json()
    helper.join()
    assert answer["error"]["code"] == 500 and answer["error"]["message"] == "Error executing tool."
    assert "KeyError: 'x'" in answer["error"]["details"]


def test_callers_need_the_run_privilege_and_see_only_shared_tools(alice, bob, viewer, admin, tool):
    assert bob.get(f"/rest/services/{tool}/GPServer").json()["error"]["code"] == 404
    assert admin.get(f"/rest/services/{tool}/GPServer").json()["tasks"] == ["Circle_Area"]
    denied = viewer.get(f"/rest/services/{tool}/GPServer").json()["error"]
    assert denied["code"] == 403 and "portal:user:runWebTool" in denied["details"][0]
    shared = publish(alice, alice.add_notebook("webtool.ipynb"), "Shared", access="org")["itemId"]
    job_id = bob.post(f"/rest/services/{shared}/GPServer/Shared/submitJob").json()["jobId"]
    assert bob.get(f"/admin/notebooks/jobs/{job_id}").json()["username"] == "bob"
    assert alice.get(f"/rest/services/{shared}/GPServer/Shared/jobs/{job_id}").json()["error"]["code"] == 404
    anonymous = alice.client.get(f"/arcgis/rest/services/{tool}/GPServer", params={"f": "json"}).json()
    assert anonymous["error"]["code"] == 499


def test_a_job_of_another_task_or_tool_answers_as_unknown(alice, nb, tool):
    other = publish(alice, alice.add_notebook("webtool.ipynb"), "Other")["itemId"]
    job_id = alice.post(_task(tool) + "/submitJob").json()["jobId"]
    assert alice.get(f"/rest/services/{other}/GPServer/Other/jobs/{job_id}").json()["error"]["code"] == 404
    plain = alice.execute(alice.add_notebook())["jobId"]
    assert alice.get(f"{_task(tool)}/jobs/{plain}").json()["error"]["code"] == 404
    assert alice.get(f"/rest/services/{tool}/GPServer/Nope").json()["error"]["message"] == (
        f"Task 'Nope' not found in service {tool}/GPServer"
    )


def test_a_tool_whose_notebook_was_deleted_cannot_be_called(alice, tool, nb):
    item = nb.webtools.store.get(tool).notebook_id
    alice.post(f"/sharing/rest/content/users/alice/items/{item}/delete")
    error = alice.post(_task(tool) + "/submitJob").json()["error"]
    assert error == {"code": 404, "message": f"Service {tool}/GPServer not found", "details": []}
    assert nb.webtools.store.get(tool) is None
