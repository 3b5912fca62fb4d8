"""The API server of a distributed deployment dies and comes back: nothing is lost.

A real `nbjobs serve` in broker mode is the only API process (the test's own Server is a passive
view: no reaper, no reconciler). Jobs are submitted over HTTP; one runs on the worker, two wait in
the broker, and one was committed by an API process whose publish never reached the broker (the
crash between commit and publish). `kill -9` of the server, then a restart: the running job
finishes meanwhile (workers do not need the API), the queued ones run, the unpublished one is
re-published by the restarted server's reconciler, and each runs exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from nbjobs.models.jobs import JobStatus
from nbjobs.models.parameters import parse_parameters
from nbjobs.roots.server import Server
from nbjobs.settings import load_settings

from .cluster import (
    NBJOBS,
    REDIS_URL,
    TIMINGS,
    fresh_database,
    make_cluster,
    marker_lines,
    marker_notebook,
    unavailable,
    wait_until,
)
from .conftest import ALICE

pytestmark = [pytest.mark.kernel, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

BROKER_URL = REDIS_URL.rsplit("/", 1)[0] + "/12"
PASSWORD = "restart-test-password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """`nbjobs serve` in broker mode over plain HTTP on loopback."""

    def __init__(self, tmp: Path, database_url: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/arcgis"
        self.log = tmp / "serve.log"
        self.argv = [NBJOBS, "serve", "--insecure-http", "--port", str(self.port),
                     "--data-dir", str(tmp / "serve")]  # fmt: skip
        self.env = {
            **os.environ,
            **TIMINGS,
            "NBJOBS_DATABASE_URL": database_url,
            "NBJOBS_BROKER_URL": BROKER_URL,
            "NBJOBS_ADMIN_PASSWORD": PASSWORD,
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )

        def answers() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                answer = httpx.get(self.url + "/sharing/rest", params={"f": "json"}, timeout=2)
                return answer.status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, 60, "nbjobs serve to answer")

    def stop(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)


@pytest.fixture
def deployment(tmp_path):
    import redis

    broker = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=3)
    try:
        broker.flushdb()
    except Exception as exc:
        unavailable(f"Redis at {BROKER_URL}", exc)
    for database_url in fresh_database():
        c = make_cluster(tmp_path, database_url, BROKER_URL, start=False)
        serve = Serve(tmp_path, database_url)
        try:
            c.w1 = c.start_worker("w1", "--concurrency", "1")
            yield c, serve
        finally:
            serve.stop(signal.SIGKILL)
            c.stop_all()
            c.api.stop(grace=5)
            broker.flushdb()
            broker.close()


def _submit(http: httpx.Client, url: str, token: str, item_id: str, marker: Path, pause: float) -> str:
    answer = http.post(url + "/admin/notebooks/executeNotebook", data={
        "f": "json", "token": token, "itemId": item_id,
        "notebookParameters": json.dumps({"marker": str(marker), "pause": pause}),
    }).json()  # fmt: skip
    assert answer.get("status") == "success", answer
    return answer["jobId"]


def test_kill_9_of_the_api_server_with_queued_running_and_unpublished_jobs_loses_nothing(
    deployment, tmp_path
):
    c, serve = deployment
    serve.start()
    c.api.users.add("alice", PASSWORD)
    with httpx.Client(timeout=30) as http:
        signed_in = {"username": "alice", "password": PASSWORD, "f": "json"}
        token = http.post(serve.url + "/sharing/rest/generateToken", data=signed_in).json()["token"]
        added = http.post(
            serve.url + "/sharing/rest/content/users/alice/addItem",
            data={"f": "json", "token": token, "type": "Notebook", "title": "marker"},
            files={"file": ("marker.ipynb", marker_notebook(), "application/x-ipynb+json")},
        ).json()
        running = _submit(http, serve.url, token, added["id"], tmp_path / "running", pause=6)
        c.wait_job(running, lambda j: j.status == JobStatus.EXECUTING and marker_lines(tmp_path / "running"))
        queued = [_submit(http, serve.url, token, added["id"], tmp_path / f"queued{i}", 0) for i in range(2)]

    # An API process that committed a job and died before its publish reached the broker.
    dead_broker = load_settings({}, data_dir=tmp_path / "crashed", database_url=c.database_url,
                                broker_url="redis://127.0.0.1:9/0")  # fmt: skip
    crashed = Server.from_settings(dead_broker)
    crashed.prepare()
    lost = parse_parameters({"marker": str(tmp_path / "lost")})
    unpublished = crashed.service.submit(ALICE, marker_notebook(), parameters=lost)
    crashed.store.close()
    assert c.api.store.get(unpublished.job_id).status == JobStatus.SUBMITTED

    serve.stop(signal.SIGKILL)
    # With no API process at all, the worker finishes what it runs and takes the queued jobs.
    for job_id in (running, *queued):
        assert c.wait_job(job_id, lambda j: j.ended, timeout=120).status == JobStatus.COMPLETED
    assert c.api.store.get(unpublished.job_id).status == JobStatus.SUBMITTED  # nobody told the broker

    serve.start()  # the restarted server's reconciler publishes what was never dispatched
    ended = c.wait_job(unpublished.job_id, lambda j: j.ended, timeout=60)
    assert ended.status == JobStatus.COMPLETED and ended.attempt == 1
    for name in ("running", "queued0", "queued1", "lost"):
        assert len(marker_lines(tmp_path / name)) == 1, name
    assert all(c.api.store.get(j).attempt == 1 for j in (running, *queued))
