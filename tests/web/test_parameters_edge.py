"""notebookParameters are parsed once, where they come in: each value is rendered exactly once per request,
and nothing that reads, stores or fires a definition renders it again."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

import nbjobs.models.parameters as parameters_module
from tests.web.conftest import CTX, Caller

TASKS = "/sharing/rest/community/users/alice/tasks"
RECEIVERS = "/admin/notebooks/webhookReceivers"
SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every rendering of a whole value, as the list of names it rendered."""
    calls: list[list[str]] = []
    real = parameters_module._render_all

    def counting(values: Any) -> dict[str, str]:
        calls.append(list(values))
        return real(values)

    monkeypatch.setattr(parameters_module, "_render_all", counting)
    return calls


def test_execute_notebook_renders_each_value_once_and_reading_the_job_renders_nothing(
    alice: Caller, nb, renders: list[list[str]]
):
    item = alice.add_notebook()
    answer = alice.execute(item, notebookParameters='{"name": "x", "count": 3}')
    assert answer["status"] == "success"
    assert renders == [["name", "count"]]
    job = alice.get(f"/admin/notebooks/jobs/{answer['jobId']}").json()
    assert job["inputs"]["notebookParameters"] == {"name": "x", "count": 3}
    stored = nb.store.get(answer["jobId"]).inputs.notebook_parameters
    assert stored == {"name": "x", "count": 3} and not stored.rendered  # trusted: no work on read
    assert renders == [["name", "count"]]


def test_a_task_is_parsed_when_defined_and_its_runs_render_nothing(
    alice: Caller, nb, clock, renders: list[list[str]]
):
    item = alice.add_notebook()
    created = alice.post(TASKS + "/createTask", title="t", type="ExecuteNotebook", itemId=item, minute="*/1",
                         hour="*", dayOfMonth="*", month="*", dayOfWeek="?",
                         parameters=json.dumps({"notebookParameters": '{"name": "Ada"}'})).json()  # fmt: skip
    assert created["success"] is True, created
    assert renders == [["name"]]
    clock.advance(60_000)
    nb.scheduler.tick()
    (job,) = nb.store.list()
    assert job.inputs.notebook_parameters == {"name": "Ada"} and job.inputs.task_id == created["taskId"]
    assert renders == [["name"]]


def test_a_webhook_event_renders_only_its_own_two_values(
    client, admin: Caller, alice: Caller, nb, renders: list[list[str]]
):
    created = admin.post(RECEIVERS + "/create", name="demo", itemId=alice.add_notebook(), secret=SECRET,
                         username="alice", signatureHeaders="X-Hub-Signature-256",
                         parameters=json.dumps({"num": 1, "name": "esri"})).json()  # fmt: skip
    assert renders == [["num", "name"]]
    body = json.dumps({"action": "opened"}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "X-Hub-Signature-256": signature}
    sink = f"{CTX}/rest/events/webhooks/{created['webhookReceiver']['id']}"
    sent = client.post(sink, content=body, headers=headers)
    assert sent.json()["status"] == "success", sent.json()
    assert renders == [["num", "name"], ["webhook_payload", "webhook_headers"]]
    job = nb.store.get(sent.json()["jobId"])
    assert list(job.inputs.notebook_parameters) == ["num", "name", "webhook_payload", "webhook_headers"]
