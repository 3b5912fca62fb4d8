"""Logs with real parts: a real kernel job's failure found through ``logs/query?jobId=…``, and ``nbjobs
serve`` with ``NBJOBS_LOG_FORMAT=json`` writing nothing but JSON lines to stderr."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from nbjobs.models.jobs import JobStatus
from nbjobs.web.app import create_app
from tests.waiting import eventually

from ..conftest import NOTEBOOKS
from .conftest import ADMIN, wait_for

NBJOBS = str(Path(sys.executable).with_name("nbjobs"))


@pytest.mark.kernel
def test_a_failed_kernel_job_is_a_warning_found_by_its_job_id(make_app):
    app = make_app()
    app.users.ensure_admin("admin", "admin-password-123")
    token = app.tokens.issue(app.users.get("admin")).token
    app.start()  # attaches the store handler and ships every second
    job = app.service.submit(ADMIN, (NOTEBOOKS / "raises.ipynb").read_bytes())
    ended = wait_for(app, job.job_id, lambda j: j.ended)
    assert ended.status == JobStatus.FAILED
    with TestClient(create_app(app.web), base_url="https://testserver") as client:

        def shipped() -> dict | None:  # the housekeeper ships about every second, in batches
            answer = client.get(
                "/arcgis/admin/logs/query", params={"f": "json", "token": token, "jobId": job.job_id}
            ).json()
            return answer if any("FAILED" in m["message"] for m in answer["logMessages"]) else None

        answer = eventually(shipped, what="the job's FAILED line in the logs")
    failed = [m for m in answer["logMessages"] if "FAILED" in m["message"]]
    assert len(failed) == 1, answer
    (line,) = failed
    assert line["type"] == "WARNING" and line["source"] == "nbjobs.execution.supervisor"
    assert f"job {job.job_id} attempt 1 FAILED (cell_error)" in line["message"]
    assert (line["jobId"], line["user"], line["runtime"]) == (job.job_id, "admin", job.runtime.runtime_id)
    assert all(m["jobId"] == job.job_id for m in answer["logMessages"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_json_format_writes_only_json_lines_and_access_lines_carry_request_ids(tmp_path):
    port = _free_port()
    env = {**os.environ, "NBJOBS_LOG_FORMAT": "json", "NBJOBS_ADMIN_PASSWORD": "json-logs-admin-pw"}
    stderr_path = tmp_path / "stderr.log"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [NBJOBS, "serve", "--insecure-http", "--port", str(port), "--workers", "0",
             "--data-dir", str(tmp_path / "data")],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}/arcgis"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/admin", params={"f": "json"}, timeout=5)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, stderr_path.read_text()
                assert time.monotonic() < deadline, stderr_path.read_text()
                time.sleep(0.2)
        sent = httpx.get(base + "/admin", params={"f": "json"}, headers={"X-Request-Id": "from-proxy-1"})
        assert sent.headers["X-Request-Id"] == "from-proxy-1"
        made = httpx.get(base + "/admin/logs/query", params={"f": "json"})  # no token: an error answer
        token = httpx.post(
            base + "/sharing/rest/generateToken",
            data={"username": "admin", "password": "json-logs-admin-pw", "client": "referer",
                  "referer": "https://localhost", "f": "json"},
        ).json()["token"]  # fmt: skip
        answer = httpx.get(base + "/admin/logs/query", params={"f": "json", "token": token}).json()
        assert set(answer) == {"hasMore", "startTime", "endTime", "logMessages"}
    finally:
        proc.terminate()
        proc.wait(30)
    raw = stderr_path.read_text().splitlines()
    assert raw, "serve wrote nothing to stderr"
    records = [json.loads(line) for line in raw]  # every line is one JSON object
    access = [r for r in records if r["logger"] == "nbjobs.access"]
    by_id = {r["request_id"]: r for r in access}
    assert by_id["from-proxy-1"]["route"] == "/admin" and by_id["from-proxy-1"]["status"] == 200
    assert made.headers["X-Request-Id"] in by_id
    assert all(r["request_id"] and r["method"] and "duration_ms" in r for r in access)
    assert any(r["level"] == "WARNING" and r["message"].startswith("stopping") for r in records)


@pytest.mark.kernel
@pytest.mark.postgres
def test_a_celery_workers_job_failure_reaches_the_logs_resource_and_its_stderr_is_json(tmp_path):
    """`nbjobs worker` (NBJOBS_LOG_FORMAT=json) runs a failing job: its WARNING, stamped with the job and
    the worker's process, is in the shared store for the API's logs/query; every stderr line is JSON."""
    from .cluster import fresh_database

    for database_url in fresh_database():
        _fail_a_job_on_a_worker(tmp_path, database_url)


def _fail_a_job_on_a_worker(tmp_path: Path, database_url: str) -> None:
    from nbjobs.service.authz import OPERATOR

    from .cluster import REDIS_URL, make_cluster, wait_until

    c = make_cluster(tmp_path, database_url, REDIS_URL)
    err = tmp_path / "worker.err"
    with open(tmp_path / "worker.out", "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            [NBJOBS, "worker", "--data-dir", str(tmp_path / "w")],
            stdout=o, stderr=e, env=c.env(NBJOBS_LOG_FORMAT="json"), start_new_session=True,
        )  # fmt: skip

    def registered() -> bool:
        return any(w.pid == proc.pid for w in c.api.workers.live(0)) and " ready." in err.read_text()

    try:
        wait_until(registered, 60, "the worker to register")
        job = c.api.service.submit(ADMIN, (NOTEBOOKS / "raises.ipynb").read_bytes())
        assert c.wait_job(job.job_id, lambda j: j.ended).status == JobStatus.FAILED

        def found() -> list:
            messages = c.api.logs.query(OPERATOR, job_id=job.job_id).messages
            return [m for m in messages if "FAILED" in m.message]

        (line,) = wait_until(found, 60, "the worker's FAILED line in the store")
        assert (line.level, line.process, line.username) == (logging.WARNING, proc.pid, "admin")
        assert line.runtime == job.runtime.runtime_id and line.source == "nbjobs.execution.supervisor"
    finally:
        proc.terminate()
        proc.wait(30)
        c.api.stop(grace=5)
    records = [json.loads(text) for text in err.read_text().splitlines()]  # every line is JSON
    claimed = [r for r in records if r.get("job_id") == job.job_id]
    assert any(r["message"].startswith(f"running job {job.job_id}") for r in claimed)  # the Celery task
    assert any("FAILED (cell_error)" in r["message"] and r["username"] == "admin" for r in claimed)
