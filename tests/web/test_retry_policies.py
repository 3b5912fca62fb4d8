"""Retry policies at every edge: executeNotebook fields, a task's parameters, a web tool's
``jsonProperties.retryPolicy``. Each reaches the job it starts; each bad value is a clear 400."""

from __future__ import annotations

import json

import pytest

from nbjobs.models.jobs import FailureReason, RetryPolicy
from tests.web.conftest import Caller
from tests.web.test_webtools_admin import publish

TASKS = "/sharing/rest/community/users/{u}/tasks"


def test_execute_notebook_takes_a_retry_policy(alice: Caller, nb):
    item_id = alice.add_notebook()
    answer = alice.execute(
        item_id,
        maxRetries=3,
        minRetryIntervalSeconds=30,
        retryOnTimeout="true",
        retryOn="kernel_died,cell_error",
    )
    job = nb.store.get(answer["jobId"])
    assert job.retry == RetryPolicy(
        3, 30.0, True, frozenset({FailureReason.KERNEL_DIED, FailureReason.CELL_ERROR})
    )
    shown = alice.get(f"/admin/notebooks/jobs/{job.job_id}").json()["customAttributes"]
    assert shown["retryPolicy"] == {
        "maxRetries": 3,
        "minRetryIntervalSeconds": 30.0,
        "retryOnTimeout": True,
        "retryOn": ["cell_error", "kernel_died"],
    }
    assert shown["attempt"] == 0 and shown["attempts"] == []
    plain = nb.store.get(alice.execute(item_id)["jobId"])
    assert plain.retry == RetryPolicy()  # no fields: no retries, and the job JSON is ArcGIS's own


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"maxRetries": -1}, "'maxRetries' must be a whole number from 0 to 10."),
        ({"maxRetries": 1000}, "'maxRetries' must be a whole number from 0 to 10."),
        ({"maxRetries": "two"}, "'maxRetries' must be a whole number from 0 to 10."),
        (
            {"minRetryIntervalSeconds": -5},
            "'minRetryIntervalSeconds' must be a number of seconds from 0 to 86400.",
        ),
        (
            {"minRetryIntervalSeconds": "1e300"},
            "'minRetryIntervalSeconds' must be a number of seconds from 0 to 86400.",
        ),
        ({"retryOnTimeout": "perhaps"}, "'retryOnTimeout' must be true or false."),
        ({"retryOn": "cancelled"}, "'retryOn': a job is never retried for 'cancelled';"),
        ({"retryOn": '["nope"]'}, "'retryOn': unknown failure reason 'nope';"),
        ({"retryOn": "[1, 2"}, "'retryOn' must be a JSON list or a comma-separated list of reasons."),
    ],
)
def test_a_bad_retry_policy_is_refused_and_no_job_is_made(alice: Caller, nb, fields, message):
    item_id = alice.add_notebook()
    answer = alice.execute(item_id, **fields)
    assert answer["status"] == "error" and answer["code"] == 400
    assert answer["messages"][0].startswith(message)
    assert nb.store.count() == 0


def test_a_task_passes_its_retry_policy_to_every_run(alice: Caller, nb, clock):
    item_id = alice.add_notebook()
    parameters = json.dumps({"maxRetries": 2, "retryOn": ["worker_lost"]})
    body = {"title": "t", "type": "ExecuteNotebook", "itemId": item_id, "minute": "*/1", "hour": "*",
            "dayOfMonth": "*", "month": "*", "dayOfWeek": "?", "parameters": parameters}  # fmt: skip
    created = alice.post(TASKS.format(u="alice") + "/createTask", **body).json()
    assert created["success"] is True, created
    clock.advance(60_000)
    nb.scheduler.tick()
    [job] = nb.store.list()
    assert job.retry == RetryPolicy(2, 0.0, False, frozenset({FailureReason.WORKER_LOST}))
    bad = json.dumps({"maxRetries": 11})
    refused = alice.post(TASKS.format(u="alice") + "/createTask", **{**body, "parameters": bad}).json()
    assert refused["error"]["code"] == 400
    assert refused["error"]["message"] == "'maxRetries' must be a whole number from 0 to 10."


def test_a_web_tool_keeps_its_retry_policy_for_its_jobs(alice: Caller, nb):
    item = alice.add_notebook("webtool.ipynb")
    created = publish(alice, item, retryPolicy={"maxRetries": 1, "minRetryIntervalSeconds": 5})
    assert created["status"] == "success", created
    tool = nb.webtools.store.get(created["itemId"])
    assert tool.retry == RetryPolicy(1, 5.0)
    shown = alice.get(f"/admin/services/{tool.service_name}.GPServer").json()
    assert shown["jsonProperties"]["retryPolicy"]["maxRetries"] == 1
    job = nb.webtools.submit(nb.users.get("alice"), tool.service_name, tool.task_name, {})
    assert nb.store.get(job.job_id).retry == RetryPolicy(1, 5.0)
    bad = publish(alice, alice.add_notebook("webtool.ipynb"), retryPolicy={"maxRetries": -2})
    assert bad["code"] == 400 and bad["messages"] == ["'maxRetries' must be a whole number from 0 to 10."]
