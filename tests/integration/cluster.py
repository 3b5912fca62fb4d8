"""A small cluster on this machine for the distributed tests: PostgreSQL, a broker, real `nbjobs
worker` processes, and the test's own Server as the API side (broker mode, housekeeping running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

from nbjobs.models.jobs import Job
from nbjobs.models.workers import WorkerRecord
from nbjobs.roots.server import Server
from nbjobs.settings import load_settings
from tests.conftest import IN_CI, POSTGRES_URL

NBJOBS = str(Path(sys.executable).with_name("nbjobs"))
REDIS_URL = os.environ.get("NBJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
AMQP_URL = os.environ.get("NBJOBS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

# Short timings so crashes and cancels show within seconds.
TIMINGS = {
    "NBJOBS_LEASE_SECONDS": "4",
    "NBJOBS_HEARTBEAT_SECONDS": "0.5",
    "NBJOBS_POLL_SECONDS": "0.2",
    "NBJOBS_CANCEL_GRACE_SECONDS": "1",
    "NBJOBS_KILL_GRACE_SECONDS": "1",
    "NBJOBS_WARM_POOL_SIZE": "1",
    "NBJOBS_REAPER_INTERVAL_SECONDS": "0.5",
    "NBJOBS_SCHEDULE_INTERVAL_SECONDS": "0.5",
    "NBJOBS_REDISPATCH_SECONDS": "2",
}


def unavailable(what: str, exc: BaseException) -> None:
    """Skip locally, fail under CI: a missing service must not pass silently there."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true but unreachable: {exc}")
    pytest.skip(f"{what} unreachable: {exc}")


def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database for one module, dropped afterwards."""
    try:
        import psycopg

        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        unavailable(f"PostgreSQL at {POSTGRES_URL}", exc)
    name = f"nbjobs_dist_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def marker_notebook() -> bytes:
    """Appends one line to the file named by its ``marker`` parameter; the first run then sleeps
    ``pause`` seconds (a re-run does not)."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("marker = ''\npause = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(
            "import os\nwith open(marker, 'a') as f:\n    f.write(f'{os.getpid()}\\n')"
        ),
        nbformat.v4.new_code_cell(
            "import time\nif len(open(marker).read().splitlines()) == 1:\n"
            "    time.sleep(pause)\nprint('done')"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    return nbformat.writes(nb).encode()


@dataclass
class Worker:
    """One `nbjobs worker` subprocess."""

    proc: subprocess.Popen
    log: Path
    args: list[str]
    env: dict[str, str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Cluster:
    database_url: str
    broker_url: str
    tmp: Path
    api: Server
    workers: list[Worker] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **TIMINGS,
            "NBJOBS_DATABASE_URL": self.database_url,
            "NBJOBS_BROKER_URL": self.broker_url,
            **extra,
        }

    def start_worker(self, name: str, *args: str, **env: str) -> Worker:
        """Start `nbjobs worker` and wait until it is registered (live in the workers table)."""
        log = self.tmp / f"{name}.log"
        argv = [NBJOBS, "worker", "--data-dir", str(self.tmp / name), *args]
        worker = self._spawn(argv, log, self.env(**env))
        self.wait_registered(worker)
        return worker

    def restart(self, worker: Worker) -> Worker:
        fresh = self._spawn(worker.args, worker.log, worker.env)
        self.wait_registered(fresh)
        return fresh

    def _spawn(self, argv: list[str], log: Path, env: dict[str, str]) -> Worker:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        worker = Worker(proc, log, argv, env)
        self.workers.append(worker)
        return worker

    def record(self, worker: Worker) -> WorkerRecord | None:
        return next((w for w in self.api.workers.live(0) if w.pid == worker.pid), None)

    def wait_registered(self, worker: Worker, timeout: float = 60) -> WorkerRecord:
        def ready() -> WorkerRecord | None:
            if worker.proc.poll() is not None:
                raise AssertionError(f"worker exited with {worker.proc.returncode}:\n{worker.text()}")
            # Registered, and Celery consuming (it logs "ready" once its consumer is up).
            return self.record(worker) if " ready." in worker.text() else None

        return wait_until(ready, timeout, "the worker to register")

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.proc.pid, signal.SIGKILL)
                worker.proc.wait(5)

    def wait_job(self, job_id: str, predicate: Callable[[Job], bool], timeout: float = 120) -> Job:
        def check() -> Job | None:
            job = self.api.store.get(job_id)
            return job if job is not None and predicate(job) else None

        return wait_until(check, timeout, f"job {job_id}")


def make_cluster(
    tmp: Path, database_url: str, broker_url: str, *, start: bool = True, **settings: Any
) -> Cluster:
    """The API side in-process; ``start=False`` leaves it a passive view (no reaper, no reconciler)."""
    values = {
        "data_dir": tmp / "api",
        "database_url": database_url,
        "broker_url": broker_url,
        "lease_seconds": 4,
        "heartbeat_seconds": 0.5,
        "poll_seconds": 0.2,
        "reaper_interval_seconds": 0.5,
        "schedule_interval_seconds": 0.5,
        "redispatch_seconds": 2,
        **settings,
    }
    api = Server.from_settings(load_settings({}, **values))
    api.prepare()
    if start:
        api.start()
    return Cluster(database_url, broker_url, tmp, api)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def marker_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
