"""kill -9 of the real server mid-job, then a restart: no job lost, none left EXECUTING, no process left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from nbjobs.models.jobs import ENDED, FailureReason, JobStatus
from nbjobs.roots.server import Server
from nbjobs.settings import load_settings

from .conftest import ADMIN

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

NBJOBS = str(Path(sys.executable).with_name("nbjobs"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, log: Path, workers: int = 2) -> subprocess.Popen:
    args = [
        NBJOBS,
        "serve",
        "--data-dir",
        str(data_dir),
        "--workers",
        str(workers),
        "--port",
        str(free_port()),
    ]
    if (
        "--insecure-http"
        in subprocess.run([NBJOBS, "serve", "--help"], capture_output=True, text=True).stdout
    ):
        args.append("--insecure-http")
    env = {**os.environ, "NBJOBS_POLL_SECONDS": "0.2", "NBJOBS_ADMIN_PASSWORD": "crash-test-password"}
    with log.open("ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=data_dir.parent
        )


def wait_until(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_of_the_server_mid_job_then_restart(tmp_path, golden):
    data_dir = tmp_path / "data"
    log = tmp_path / "server.log"
    client = Server.from_settings(load_settings({}, data_dir=data_dir, workers=0))  # the test's own view
    client.prepare()
    sleepers = [client.service.submit(ADMIN, golden("sleeps.ipynb")) for _ in range(2)]
    server = start_server(data_dir, log)
    try:
        running = wait_until(
            lambda: all(client.store.processes(j.job_id)[1] for j in sleepers), 60, "both kernels to start"
        )
        assert running
        waiting = [client.service.submit(ADMIN, golden("trivial.ipynb")) for _ in range(3)]
        pids = [pid for j in sleepers for pid in client.store.processes(j.job_id) if pid]
        assert all(psutil.pid_exists(p) for p in pids)

        server.send_signal(signal.SIGKILL)
        server.wait(60)
        # runners die with their parent (PDEATHSIG) and kernels follow their runner (ipykernel parent poller)
        wait_until(lambda: not any(_alive(p) for p in pids), 60, "runners and kernels to exit")
        assert all(client.store.get(j.job_id).status == JobStatus.EXECUTING for j in sleepers)

        server = start_server(data_dir, log)
        for job in sleepers:
            ended = wait_until(lambda job=job: _ended(client, job.job_id), 60, "recovery")
            assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.WORKER_LOST
            assert ended.attempt == 1
        for job in waiting:
            ended = wait_until(lambda job=job: _ended(client, job.job_id), 90, "waiting jobs to run")
            assert ended.status == JobStatus.COMPLETED and ended.attempt == 1  # ran once, not twice
        assert client.store.count(statuses=frozenset({JobStatus.EXECUTING, JobStatus.CANCELLING})) == 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        client.stop()
    assert "Traceback" not in log.read_text(errors="replace")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _ended(client: Server, job_id: str):
    job = client.store.get(job_id)
    return job if job is not None and job.status in ENDED else None
