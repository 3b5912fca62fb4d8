"""Tasks and webhooks against the real server: a GitHub-signed sink and Esri's ``arcgis.gis.tasks``."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import warnings
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import USER_PASSWORD, Server, Session

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
SECRET = "It's a Secret to Everybody 32 ch"  # exactly 32 characters
assert len(SECRET) == 32


def _github_signature(body: bytes) -> str:
    """What GitHub sends in X-Hub-Signature-256."""
    return "sha256=" + hmac.new(SECRET.encode(), msg=body, digestmod=hashlib.sha256).hexdigest()


def test_github_signed_webhook_runs_the_notebook(server: Server, admin: Session, alice: Session):
    item_id = alice.add_notebook("parameters.ipynb")
    created = admin.post("/admin/notebooks/webhookReceivers/create", name="github", itemId=item_id,
                         secret=SECRET, signatureHeaders="X-Hub-Signature-256", username="alice",
                         parameters=json.dumps({"name": "from-github"}))  # fmt: skip
    receiver = created["webhookReceiver"]
    assert "secret" not in receiver
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/abc",
               "X-GitHub-Event": "ping", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
               "X-Hub-Signature-256": _github_signature(body)}  # fmt: skip
    with server.client() as http:
        answer = http.post(receiver["url"], content=body, headers=headers).json()
        assert answer["status"] == "success", answer
        job = alice.wait(answer["jobId"], {"COMPLETED", "FAILED"})
        assert job["status"] == "COMPLETED", job
        params = job["inputs"]["notebookParameters"]
        assert params["name"] == "from-github" and params["webhook_payload"]["hook_id"] == 1
        assert params["webhook_headers"]["x-github-event"] == "ping"
        assert "x-hub-signature-256" not in params["webhook_headers"]
        forged = http.post(receiver["url"], content=body + b" ", headers=headers).json()
        assert forged["error"]["code"] == 403
        wrong_header = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
        wrong_header["X-Hub-Signature"] = headers["X-Hub-Signature-256"]  # right HMAC, wrong header name
        assert http.post(receiver["url"], content=body, headers=wrong_header).json()["error"]["code"] == 401
    log = admin.get(f"/admin/notebooks/webhookReceivers/{receiver['id']}/deliveries")["deliveries"]
    assert [bool(d["jobId"]) for d in log] == [False, False, True]


if os.environ.get("CI", "").lower() == "true":
    import arcgis.gis as arcgis_gis
else:
    arcgis_gis = pytest.importorskip("arcgis.gis")


@pytest.fixture
def _quiet_client() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.usefixtures("_quiet_client")
def test_arcgis_client_schedules_an_executenotebook_task(server: Server, alice: Session):
    gis = arcgis_gis.GIS(server.url, username="alice", password=USER_PASSWORD, verify_cert=False)
    item = gis.content.get(alice.add_notebook("parameters.ipynb"))
    manager = gis.users.me.tasks
    task = manager.create(item=item, cron="*/1 * * * *", task_type="ExecuteNotebook", occurences=1,
                          title="every minute, once", parameters={"name": "scheduled"})  # fmt: skip
    props = task.properties
    assert props["type"] == "ExecuteNotebook" and props["itemId"] == item.itemid and props["active"] is True
    assert props["cronSchedule"]["minute"] == "*/1" and props["runIntervalSeconds"] == 60
    assert json.loads(props["parameters"]["notebookParameters"]) == {"name": "scheduled"}
    assert [t.properties["id"] for t in manager.search(item=item)] == [props["id"]]
    assert manager.count == 1
    deadline = time.monotonic() + 180  # the next minute boundary, plus a scheduler tick (and a slow machine)
    while not task.runs:
        assert time.monotonic() < deadline, "the task did not fire"
        time.sleep(1)
    run = task.runs[0]
    job = alice.wait(run.properties["jobId"], {"COMPLETED", "FAILED"})
    assert job["status"] == "COMPLETED" and job["inputs"]["taskId"] == props["id"]
    assert job["inputs"]["notebookParameters"] == {"name": "scheduled"}
    deadline = time.monotonic() + 60
    while task.runs[0].properties["status"] != "succeeded":
        assert time.monotonic() < deadline, task.runs[0].properties
        time.sleep(1)
        task._properties = None
    assert gis._con.get(f"{task._url}", {"f": "json"})["taskState"] == "completed"  # maxOccurrences 1
    assert task.update(title="renamed", occurences=5) is True
    assert task.enable(False) is True
    assert task.delete() is True
    assert manager.search(item=item) == []
