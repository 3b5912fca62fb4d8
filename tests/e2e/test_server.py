"""End to end over HTTPS: the real server, real kernels, driven with httpx."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Server, sign_in
from tests.waiting import eventually

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def test_serve_printed_url_and_certificate(server: Server):
    log = server.output.read_text()
    assert "serving at https://127.0.0.1:" in log
    assert "self-signed certificate" in log
    assert "created administrator" not in log  # the password came from NBJOBS_ADMIN_PASSWORD


def test_execute_with_parameters_to_completed(alice):
    item_id = alice.add_notebook("parameters.ipynb")
    started = alice.post("/admin/notebooks/executeNotebook", itemId=item_id,
                         notebookParameters=json.dumps({"name": "Ada", "count": 7}), updatePortalItem="true",
                         saveInjectedParameters="true")  # fmt: skip
    assert started["status"] == "success"
    job_id = started["jobId"]
    assert started["jobUrl"].startswith("https://127.0.0.1:")
    job = alice.wait(job_id, {"COMPLETED", "FAILED", "CANCELLED"})
    assert job["status"] == "COMPLETED", job
    assert job["endTime"] >= job["startTime"] > 0
    assert job["customAttributes"]["executeNotebookProgress"]["percent"] == 100
    for path in (f"/admin/system/jobs/{job_id}", f"/admin/jobs/{job_id}"):
        view = alice.get(path)
        assert job_id in (view.get("jobId"), view.get("jobid"))
    assert job_id in [j["jobId"] for j in alice.get("/admin/notebooks/jobs")["asyncNotebookJobs"]]
    assert job_id in [j["jobId"] for j in alice.get("/admin/system/jobs", detail="true")["asyncJobs"]]
    output = alice.http.get(
        f"{alice.base}/admin/notebooks/jobs/{job_id}/output", params={"token": alice.token}
    )
    assert "'Ada' 7" in output.text

    # updatePortalItem: the item now holds the executed notebook (written back within a poll interval).
    def written_back() -> bool:
        data = alice.http.get(f"{alice.base}/sharing/rest/content/items/{item_id}/data",
                              params={"token": alice.token}).text  # fmt: skip
        return "'Ada' 7" in data

    eventually(written_back, what="the executed notebook written back to the item")


def test_failing_notebook_is_failed(alice):
    item_id = alice.add_notebook("raises.ipynb")
    job_id = alice.post("/admin/notebooks/executeNotebook", itemId=item_id)["jobId"]
    job = alice.wait(job_id, {"COMPLETED", "FAILED", "CANCELLED"})
    assert job["status"] == "FAILED"
    assert "boom at cell 1" in job["results"]["message"]
    assert job["failure"]["cellIndex"] == 1


def test_cancel_running_job(alice):
    item_id = alice.add_notebook("sleeps.ipynb")
    job_id = alice.post("/admin/notebooks/executeNotebook", itemId=item_id)["jobId"]
    job = alice.wait(job_id, {"EXECUTING"})

    def in_the_sleeping_cell() -> bool:
        job = alice.get(f"/admin/notebooks/jobs/{job_id}")
        return job["customAttributes"]["executeNotebookProgress"]["percent"] >= 33

    eventually(in_the_sleeping_cell, what="the job to reach its sleeping cell")
    assert alice.post(f"/admin/notebooks/jobs/{job_id}/cancel") == {"status": "success"}
    job = alice.wait(job_id, {"CANCELLED", "FAILED", "COMPLETED"}, timeout=60)
    assert job["status"] == "CANCELLED"
    assert job["customAttributes"]["isCancelled"] is True
    again = alice.post(f"/admin/notebooks/jobs/{job_id}/cancel")
    assert again == {"status": "error", "messages": [f"Unable to cancel job :[{job_id}]"], "code": 500}


def test_visibility(alice, bob, admin):
    item_id = alice.add_notebook("trivial.ipynb")
    job_id = alice.post("/admin/notebooks/executeNotebook", itemId=item_id, updatePortalItem="false")["jobId"]
    assert bob.get(f"/admin/notebooks/jobs/{job_id}")["code"] == 404
    assert bob.get(f"/admin/system/jobs/{job_id}")["code"] == 404
    assert bob.post(f"/admin/system/jobs/{job_id}/cancel")["code"] == 404
    assert job_id not in [j["jobId"] for j in bob.get("/admin/system/jobs")["asyncJobs"]]
    assert bob.get(f"/sharing/rest/content/items/{item_id}")["error"]["code"] == 400
    assert bob.post("/admin/notebooks/executeNotebook", itemId=item_id)["code"] == 400
    assert admin.get(f"/admin/notebooks/jobs/{job_id}")["username"] == "alice"
    assert admin.get(f"/sharing/rest/content/items/{item_id}")["owner"] == "alice"
    alice.wait(job_id, {"COMPLETED"})


def test_bad_inputs(alice, server):
    item_id = alice.add_notebook("trivial.ipynb")
    before = alice.get("/admin/system/jobs")["total"]
    for field, value in (("notebookParameters", "not json"), ("notebookParameters", "[1]"),
                         ("updatePortalItem", "maybe"), ("executionTimeoutInMinutes", "-1")):  # fmt: skip
        answer = alice.post("/admin/notebooks/executeNotebook", itemId=item_id, **{field: value})
        assert answer["status"] == "error" and answer["code"] == 400, (field, value, answer)
    assert alice.post("/admin/notebooks/executeNotebook", itemId="f" * 32)["code"] == 400
    assert alice.get("/admin/system/jobs")["total"] == before
    not_nb = {"file": ("x.ipynb", b"this is not json", "application/x-ipynb+json")}
    assert (
        alice.post("/sharing/rest/content/users/alice/addItem", files=not_nb, type="Notebook")["error"][
            "code"
        ]
        == 400
    )
    with server.client() as http:
        forged = http.get(
            server.url + "/admin/notebooks/jobs", params={"f": "json", "token": "forged"}
        ).json()
        missing = http.get(server.url + "/admin/notebooks/jobs", params={"f": "json"}).json()
    assert forged["code"] == 498 and missing["code"] == 499


def test_200mb_upload_is_refused_cleanly(alice):
    big = b"x" * (200 * 1024 * 1024)
    files = {"file": ("big.ipynb", big, "application/x-ipynb+json")}
    answer = alice.post("/sharing/rest/content/users/alice/addItem", files=files, type="Notebook")
    assert answer["error"]["code"] == 413


def test_disabled_user(server):
    from tests.e2e.conftest import USER_PASSWORD, _nbjobs

    assert (
        _nbjobs("users", "add", "carol", "--password", USER_PASSWORD, data_dir=server.data_dir).returncode
        == 0
    )
    carol = sign_in(server, "carol", USER_PASSWORD)
    assert carol.get("/sharing/rest/community/self")["username"] == "carol"
    assert _nbjobs("users", "disable", "carol", data_dir=server.data_dir).returncode == 0
    assert carol.get("/sharing/rest/community/self")["error"]["code"] == 498
    carol.http.close()
    with server.client() as http:
        login = {"username": "carol", "password": USER_PASSWORD, "f": "json"}
        answer = http.post(server.url + "/sharing/rest/generateToken", data=login).json()
    assert answer["error"]["code"] == 400
    listing = _nbjobs("users", "list", data_dir=server.data_dir).stdout
    assert "carol\torg_user\tdisabled" in listing
