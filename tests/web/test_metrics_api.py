"""``/admin/metrics`` over HTTP: the Prometheus text an administrator reads (and a parser accepts), the
admin envelope for everyone else, and the HTTP metrics labelled by route template, never by raw path."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from nbjobs.models.runtimes import DEFAULT_RUNTIME
from nbjobs.roots.server import Server
from nbjobs.settings import load_settings
from nbjobs.web.app import create_app
from tests.web.conftest import CTX, Caller
from tests.web.test_webhooks_api import _b64, _create

JOB_ROUTE = f"{CTX}/admin/notebooks/jobs/{{job_id}}"


def scrape(admin: Caller) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the admin's scrape: (name, sorted labels) -> value."""
    response = admin.get("/admin/metrics")
    assert response.status_code == 200
    return parse(response.text)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_admin_reads_prometheus_text_whatever_f_says(admin: Caller):
    for f in ("json", "pjson", "html", ""):
        response = admin.client.get(CTX + "/admin/metrics", params={"f": f, "token": admin.token})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        names = {family.name for family in text_string_to_metric_families(response.text)}
        assert {"nbjobs_jobs", "nbjobs_workers_online", "nbjobs_http_requests"} <= names
    bearer = admin.client.get(CTX + "/admin/metrics", headers={"authorization": f"Bearer {admin.token}"})
    assert bearer.status_code == 200 and "nbjobs_jobs_submitted_total" in bearer.text


def test_non_admins_are_denied_in_the_admin_envelope(alice: Caller, viewer: Caller, client):
    for caller in (alice, viewer):
        answer = caller.get("/admin/metrics").json()
        assert answer == {
            "status": "error",
            "messages": ["Only administrators can read the metrics."],
            "code": 403,
        }
    anonymous = client.get(CTX + "/admin/metrics", params={"f": "json"}).json()
    assert anonymous["status"] == "error" and anonymous["code"] == 499
    assert "nbjobs_" not in client.get(CTX + "/admin/metrics").text  # no metrics leak in the html error page


def test_submits_and_cancels_move_counters_and_the_jobs_gauge(admin: Caller, alice: Caller):
    item = alice.add_notebook()
    runtime = DEFAULT_RUNTIME.name
    before = scrape(admin)
    first = alice.execute(item)["jobId"]
    alice.execute(item)
    after = scrape(admin)
    submitted = value(after, "nbjobs_jobs_submitted_total", type="executeNotebook", runtime=runtime)
    assert (
        submitted - value(before, "nbjobs_jobs_submitted_total", type="executeNotebook", runtime=runtime) == 2
    )
    assert value(after, "nbjobs_jobs", type="executeNotebook", status="SUBMITTED", runtime=runtime) == 2

    assert alice.post(f"/admin/notebooks/jobs/{first}/cancel").json()["status"] == "success"
    assert alice.post(f"/admin/notebooks/jobs/{first}/cancel").json()["status"] == "error"  # ended already
    ended = scrape(admin)
    labels = {"type": "executeNotebook", "status": "CANCELLED", "runtime": runtime, "reason": "cancelled"}
    assert value(ended, "nbjobs_jobs_ended_total", **labels) == 1  # counted once, by the write that won
    assert value(ended, "nbjobs_jobs", type="executeNotebook", status="SUBMITTED", runtime=runtime) == 1
    # never started: no duration, no queue wait
    assert value(ended, "nbjobs_job_duration_seconds_count", type="executeNotebook", status="CANCELLED",
                 runtime=runtime) == 0  # fmt: skip


def test_http_metrics_use_route_templates_never_raw_paths(admin: Caller, alice: Caller, client):
    job_id = alice.execute(alice.add_notebook())["jobId"]
    for _ in range(3):
        assert alice.get(f"/admin/notebooks/jobs/{job_id}").status_code == 200
    client.get(CTX + "/no/such/path/j0123")
    client.request("BREW", CTX + "/admin")
    response = admin.get("/admin/metrics")
    assert job_id not in response.text and "/no/such" not in response.text and "BREW" not in response.text
    samples = scrape(admin)
    assert value(samples, "nbjobs_http_requests_total", route=JOB_ROUTE, method="GET", status="200") == 3
    assert value(samples, "nbjobs_http_request_duration_seconds_count", route=JOB_ROUTE, method="GET") == 3
    # errors answer HTTP 200 with the ArcGIS envelope, so status is the HTTP code, not the error code
    assert value(samples, "nbjobs_http_requests_total", route="unmatched", method="GET", status="200") == 1
    other = value(samples, "nbjobs_http_requests_total", route=f"{CTX}/admin", method="other", status="200")
    assert other == 1
    routes = {dict(labels).get("route") for name, labels in samples if name == "nbjobs_http_requests_total"}
    assert all(r == "unmatched" or r.startswith(CTX) for r in routes), routes


def test_webhook_deliveries_are_counted_by_outcome(admin: Caller, alice: Caller, client):
    rid = _create(admin, alice.add_notebook())["webhookReceiver"]["id"]
    body = b'{"a": 1}'
    sink = f"{CTX}/rest/events/webhooks/{rid}"
    client.post(sink, content=body, headers={"x-esrihook-signature": _b64(body)})
    client.post(sink, content=body, headers={"x-esrihook-signature": _b64(body, "f" * 32)})
    client.post(sink, content=body)  # no signature at all
    client.post(
        f"{CTX}/rest/events/webhooks/nope", content=body, headers={"x-esrihook-signature": _b64(body)}
    )
    samples = scrape(admin)
    assert value(samples, "nbjobs_webhook_deliveries_total", outcome="accepted") == 1
    assert value(samples, "nbjobs_webhook_deliveries_total", outcome="bad_signature") == 2
    assert value(samples, "nbjobs_webhook_deliveries_total", outcome="unknown_receiver") == 1


def test_a_body_the_guard_refuses_before_routing_still_gets_its_route_template(tmp_path):
    settings = load_settings({}, data_dir=tmp_path, workers=0, max_request_bytes=1000)
    server = Server.from_settings(settings)
    try:
        with TestClient(create_app(server.web), base_url="https://testserver") as client:
            refused = client.post(
                CTX + "/admin/notebooks/executeNotebook", data={"f": "json", "x": "y" * 5000}
            )
            assert refused.json()["code"] == 413
        samples = parse(server.metrics.render().decode())
        route = f"{CTX}/admin/notebooks/executeNotebook"
        assert value(samples, "nbjobs_http_requests_total", route=route, method="POST", status="200") == 1
    finally:
        server.store.close()


MAX_AGE = 3.0


def test_an_event_stream_s_duration_is_until_it_started_not_while_it_stayed_open(tmp_path):
    settings = load_settings(
        {}, data_dir=tmp_path, workers=0, stream_max_seconds=MAX_AGE, stream_heartbeat_seconds=0.5
    )
    server = Server.from_settings(settings)
    try:
        server.prepare()
        server.users.add("alice", "alice-password-1")
        token = server.tokens.issue(server.users.get("alice")).token
        with TestClient(create_app(server.web), base_url="https://testserver") as client:
            began = time.monotonic()
            answer = client.get(CTX + "/admin/notebooks/jobs/events", params={"token": token})
            open_for = time.monotonic() - began
        assert (
            answer.headers["content-type"].startswith("text/event-stream") and "event: ready" in answer.text
        )
        assert open_for >= MAX_AGE  # the stream stayed open until its maximum age
        samples = parse(server.metrics.render().decode())
        route = f"{CTX}/admin/notebooks/jobs/events"
        assert value(samples, "nbjobs_http_request_duration_seconds_count", route=route, method="GET") == 1
        # The stream's age is counted from just before its response starts, so a duration that held the
        # open time would be about open_for; one until the start is about open_for - MAX_AGE. Half the
        # age as the margin: how slow the machine is to reach the handler does not matter, only the
        # moment between the handler and the response's start, which has no I/O in it.
        duration = value(samples, "nbjobs_http_request_duration_seconds_sum", route=route, method="GET")
        assert duration < open_for - MAX_AGE / 2
    finally:
        server.web.feed.close()
        server.store.close()
