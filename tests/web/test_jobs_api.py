"""executeNotebook and both job families, with no worker running: jobs stay SUBMITTED unless moved here."""

from __future__ import annotations

import pytest

from nbjobs.models.jobs import OUTPUT, Failure, FailureReason, JobStatus, JobUpdate
from tests.conftest import notebook_bytes

FULL_KEYS = {
    "jobId", "type", "name", "username", "status", "inputs", "results", "customAttributes",
    "notebookRuntimeId", "notebookRuntimeName", "notebookRuntimeVersion", "dateCreated", "startTime",
    "endTime", "revision", "id", "url", "privateUrl", "failure",
}  # fmt: skip


def test_execute_notebook(alice, nb):
    item_id = alice.add_notebook()
    answer = alice.execute(
        item_id,
        notebookParameters='{"name": "x", "count": 3}',
        updatePortalItem="false",
        executionTimeoutInMinutes="5",
    )
    assert answer["status"] == "success"
    job_id = answer["jobId"]
    assert answer["jobUrl"] == f"https://testserver/arcgis/admin/notebooks/jobs/{job_id}"
    job = alice.get(f"/admin/notebooks/jobs/{job_id}").json()
    assert set(job) == FULL_KEYS
    assert job["status"] == "SUBMITTED"
    assert job["endTime"] == 0
    assert job["inputs"]["itemId"] == item_id
    assert job["inputs"]["notebookParameters"] == {"name": "x", "count": 3}
    assert job["inputs"]["updatePortalItem"] is False
    assert job["inputs"]["executionTimeoutInMinutes"] == 5
    assert job["customAttributes"] == {
        "isCancelled": False,
        "executeNotebookProgress": {"message": "", "percent": 0},
    }
    assert nb.service.store.get_blob(job_id, "input") == notebook_bytes("parameters.ipynb")


def test_all_job_views(alice, nb):
    job_id = alice.execute(alice.add_notebook())["jobId"]
    brief_b = alice.get("/admin/notebooks/jobs").json()
    assert brief_b == {"asyncNotebookJobs": [
        {"jobId": job_id, "name": "executeNotebook", "startTime": 0, "endTime": 0, "status": "SUBMITTED"}
    ]}  # fmt: skip
    detail_b = alice.get("/admin/notebooks/jobs", detail="true").json()
    assert [j["jobId"] for j in detail_b["notebookJobs"]] == [job_id]
    assert set(detail_b["notebookJobs"][0]) == FULL_KEYS
    brief_a = alice.get("/admin/system/jobs").json()
    assert brief_a["total"] == 1
    assert brief_a["asyncJobs"][0]["jobId"] == job_id
    assert brief_a["asyncJobs"][0]["username"] == "alice"
    detail_a = alice.get("/admin/system/jobs", detail="true", num="10", sortByDate="true").json()
    assert set(detail_a["asyncJobs"][0]) == FULL_KEYS
    assert alice.get(f"/admin/system/jobs/{job_id}").json()["jobId"] == job_id
    generic = alice.get(f"/admin/jobs/{job_id}").json()
    assert generic["jobid"] == job_id and generic["status"] == "SUBMITTED" and generic["endtime"] == 0


def test_system_jobs_num_and_sort(alice):
    item_id = alice.add_notebook()
    ids = [alice.execute(item_id)["jobId"] for _ in range(3)]
    listing = alice.get("/admin/system/jobs", num="2", sortByDate="true").json()
    assert listing["total"] == 3
    assert len(listing["asyncJobs"]) == 2
    assert listing["asyncJobs"][0]["jobId"] in ids


def test_failed_job_shows_failure_in_results(alice, nb, clock):
    job_id = alice.execute(alice.add_notebook())["jobId"]
    nb.store.transition(
        job_id, JobStatus.FAILED, clock(),
        update=JobUpdate(failure=Failure(FailureReason.CELL_ERROR, "ValueError: boom", cell_index=1,
                                         ename="ValueError", evalue="boom")),
    )  # fmt: skip
    job = alice.get(f"/admin/notebooks/jobs/{job_id}").json()
    assert job["status"] == "FAILED"
    assert job["endTime"] == clock()
    assert job["results"]["message"] == "ValueError: boom"
    assert job["failure"]["reason"] == "cell_error"
    assert job["failure"]["cellIndex"] == 1


@pytest.mark.parametrize("family", ["notebooks/jobs", "system/jobs", "jobs"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_cancel_then_cancel_again(alice, family, method):
    job_id = alice.execute(alice.add_notebook())["jobId"]
    call = getattr(alice, method)
    assert call(f"/admin/{family}/{job_id}/cancel").json() == {"status": "success"}
    job = alice.get(f"/admin/notebooks/jobs/{job_id}").json()
    assert job["status"] == "CANCELLED"
    assert job["customAttributes"]["isCancelled"] is True
    again = call(f"/admin/{family}/{job_id}/cancel").json()
    assert again == {"status": "error", "messages": [f"Unable to cancel job :[{job_id}]"], "code": 500}


def test_visibility_of_jobs(alice, bob, admin):
    job_id = alice.execute(alice.add_notebook())["jobId"]
    unknown_id = "j" + "0" * 32

    def shape(answer: dict) -> dict:
        return {
            **answer,
            "messages": [m.replace(unknown_id, "<id>").replace(job_id, "<id>") for m in answer["messages"]],
        }

    for path in ("notebooks/jobs/{}", "system/jobs/{}", "jobs/{}", "notebooks/jobs/{}/cancel",
                 "system/jobs/{}/cancel", "notebooks/jobs/{}/output"):  # fmt: skip
        theirs = bob.get("/admin/" + path.format(job_id)).json()
        unknown = bob.get("/admin/" + path.format(unknown_id)).json()
        assert theirs["status"] == "error" and theirs["code"] == 404
        assert shape(theirs) == shape(unknown)
    assert bob.get("/admin/notebooks/jobs").json() == {"asyncNotebookJobs": []}
    assert bob.get("/admin/system/jobs").json() == {"asyncJobs": [], "total": 0}
    assert bob.post("/admin/system/jobs/deleteAll").json() == {"status": "success"}
    assert alice.get(f"/admin/notebooks/jobs/{job_id}").json()["status"] == "SUBMITTED"
    assert admin.get(f"/admin/notebooks/jobs/{job_id}").json()["username"] == "alice"
    assert [j["jobId"] for j in admin.get("/admin/system/jobs").json()["asyncJobs"]] == [job_id]
    assert admin.post(f"/admin/notebooks/jobs/{job_id}/cancel").json() == {"status": "success"}


def test_cannot_execute_anothers_item(alice, bob, nb):
    item_id = alice.add_notebook()
    theirs = bob.execute(item_id)
    unknown = bob.execute("0" * 32)
    assert theirs["code"] == unknown["code"] == 400
    assert nb.store.count() == 0


def test_delete_all_removes_only_ended_jobs(alice, admin, nb):
    item_id = alice.add_notebook()
    ended, waiting = alice.execute(item_id)["jobId"], alice.execute(item_id)["jobId"]
    alice.post(f"/admin/notebooks/jobs/{ended}/cancel")
    assert admin.post("/admin/system/jobs/deleteAll").json() == {"status": "success"}
    assert [j["jobId"] for j in alice.get("/admin/system/jobs").json()["asyncJobs"]] == [waiting]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("notebookParameters", "{not json"),
        ("notebookParameters", "[1, 2]"),
        ("notebookParameters", '"text"'),
        ("updatePortalItem", "maybe"),
        ("saveInjectedParameters", "perhaps"),
        ("executionTimeoutInMinutes", "-1"),
        ("executionTimeoutInMinutes", "soon"),
        ("notebookRuntimeId", "no-such-runtime"),
    ],
)
def test_execute_rejects_bad_input_and_creates_nothing(alice, nb, field, value):
    item_id = alice.add_notebook()
    answer = alice.execute(item_id, **{field: value})
    assert answer["status"] == "error"
    assert answer["code"] == 400
    assert answer["messages"]
    assert nb.store.count() == 0
    assert nb.items.store.pending_updates() == []


def test_execute_without_item_id(alice, nb):
    answer = alice.post("/admin/notebooks/executeNotebook").json()
    assert answer["code"] == 400
    assert nb.store.count() == 0


def test_user_without_notebook_privilege_cannot_execute(viewer, admin, nb):
    item_id = admin.add_notebook()
    answer = viewer.execute(item_id)
    assert answer["code"] == 403
    assert nb.store.count() == 0


def test_unknown_and_malformed_job_ids(alice):
    for job_id in ("nope", "j" + "0" * 32, "J" * 33):
        answer = alice.get(f"/admin/notebooks/jobs/{job_id}").json()
        assert answer["status"] == "error" and answer["code"] == 404


def test_update_portal_item_writes_back_on_completion(alice, nb, clock):
    item_id = alice.add_notebook()
    job_id = alice.execute(item_id)["jobId"]
    assert nb.items.store.pending_updates() == [(job_id, item_id)]
    claimed = nb.store.claim_next("w", clock(), 60_000)
    assert claimed is not None and claimed.job_id == job_id
    executed = notebook_bytes("trivial.ipynb")
    nb.store.put_blob(job_id, OUTPUT, executed, clock())
    assert nb.notebooks.sync_item_updates() == 0  # still EXECUTING: nothing yet
    nb.store.transition(job_id, JobStatus.COMPLETED, clock())
    assert alice.get(f"/sharing/rest/content/items/{item_id}/data").content == executed
    assert nb.items.store.pending_updates() == []
    output = alice.client.get(f"/arcgis/admin/notebooks/jobs/{job_id}/output", params={"token": alice.token})
    assert output.content == executed


def test_failed_job_leaves_item_alone(alice, nb, clock):
    item_id = alice.add_notebook()
    job_id = alice.execute(item_id)["jobId"]
    alice.post(f"/admin/notebooks/jobs/{job_id}/cancel")
    assert nb.notebooks.sync_item_updates() == 0
    assert alice.get(f"/sharing/rest/content/items/{item_id}/data").content == notebook_bytes(
        "parameters.ipynb"
    )
    assert nb.items.store.pending_updates() == []


def test_runtimes(alice):
    runtimes = alice.get("/admin/notebooks/runtimes").json()["runtimes"]
    runtime_id = runtimes[0]["id"]
    assert alice.get(f"/admin/notebooks/runtimes/{runtime_id}").json()["name"] == runtimes[0]["name"]
    libraries = alice.get(f"/admin/notebooks/runtimes/{runtime_id}/manifest").json()["libraries"]
    assert any(lib["name"].lower() == "nbclient" for lib in libraries)
    assert alice.get("/admin/notebooks/runtimes/nope").json()["code"] == 404
