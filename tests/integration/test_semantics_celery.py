"""The core engine's job-semantics tests, unchanged, on the distributed backend.

The tests of ``test_execution.py`` and ``test_cancel.py`` are collected again here; only their
``make_app`` fixture differs: it builds the API side in broker mode on a fresh PostgreSQL database
and Redis, and ``app.pool`` drives real ``nbjobs worker`` processes instead of threads in the test
process. So submit, parameters, progress, output caps, deadlines, cancel (queued and running, with a
kernel that ignores SIGINT or a child that ignores SIGTERM) and the error envelopes are proven the
same on both backends. ``test_a_cancel_wakes_the_supervisor_instead_of_waiting_for_its_poll`` here is
the cross-machine case: the worker polls the row only every 30 s, so a cancel that ends the job
within seconds came through PostgreSQL LISTEN/NOTIFY from another process.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nbjobs.models.jobs import ENDED, Job, JobStatus
from nbjobs.roots.server import Server
from nbjobs.settings import env_var_of, load_settings

from . import test_cancel, test_execution
from .cluster import NBJOBS, REDIS_URL, alive, fresh_database, unavailable, wait_until
from .conftest import ADMIN, APP_DEFAULTS

pytestmark = [pytest.mark.kernel, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

# The same tests, collected in this module so the fixture below replaces the embedded one.
for _module in (test_execution, test_cancel):
    for _name in dir(_module):
        if _name.startswith("test_"):
            globals()[_name] = getattr(_module, _name)

BROKER_URL = REDIS_URL.rsplit("/", 1)[0] + "/11"  # a database of its own: flushed per test


class WorkerPool:
    """``app.pool`` for the distributed backend: the same calls the tests make on the local pool,
    carried out by real `nbjobs worker` processes consuming from the broker."""

    def __init__(self, app: Server, tmp: Path, env: dict[str, str]) -> None:
        self.app = app
        self.tmp = tmp
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def start(self, workers: int | None = None) -> None:
        concurrency = self.app.settings.pool.workers if workers is None else workers
        if concurrency <= 0:
            return
        log = self.tmp / f"worker-{len(self.procs)}.log"
        argv = [NBJOBS, "worker", "--concurrency", str(concurrency),
                "--data-dir", str(self.tmp / f"worker-{len(self.procs)}")]  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        self.procs.append(proc)

        def registered() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}:\n{log.read_text()}")
            return " ready." in log.read_text() and any(w.pid == proc.pid for w in self.app.workers.live(0))

        wait_until(registered, 60, "the worker to register")

    def run(self, *, burst: bool = False) -> list[Job]:
        """Run until no job waits or runs; the jobs that ended meanwhile, in start order."""
        assert burst
        before = {j.job_id: j.status for j in self.app.store.list(limit=10_000)}
        if not any(p.poll() is None for p in self.procs):
            self.start(1)

        def settled() -> list[Job] | None:
            jobs = self.app.store.list(limit=10_000)
            if any(j.status not in ENDED for j in jobs):
                return None
            return jobs

        jobs = wait_until(settled, 120, "every job to end")
        ran = [j for j in jobs if before.get(j.job_id) != j.status and j.start_time]
        return sorted(ran, key=lambda j: j.start_time)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """The embedded fixture's signature and defaults, on PostgreSQL + Redis + `nbjobs worker`."""
    import redis

    broker = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=3)
    try:
        broker.flushdb()
    except Exception as exc:
        unavailable(f"Redis at {BROKER_URL}", exc)
    made: list[tuple[Server, WorkerPool]] = []
    databases = fresh_database()
    database_url = next(databases)

    def make(**overrides: object) -> Server:
        values: dict[str, object] = dict(data_dir=tmp_path / "data", **APP_DEFAULTS)
        values.update(overrides)
        values.update(database_url=database_url, broker_url=BROKER_URL)
        app = Server.from_settings(load_settings({}, **values))
        app.prepare()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NBJOBS_")}
        env.update({env_var_of(k): str(v) for k, v in values.items() if env_var_of(k) and k != "data_dir"})
        pool = WorkerPool(app, tmp_path, env)
        app.pool = pool  # type: ignore[assignment]  # the tests drive workers through app.pool
        made.append((app, pool))
        return app

    yield make
    for app, pool in made:
        pool.stop()
        app.stop(grace=10)
    kernels = [p for app, pool in made for p in pool.procs]
    assert not any(alive(p.pid) for p in kernels)
    for _ in databases:  # drop the database
        pass
    broker.flushdb()
    broker.close()


def test_the_fixture_really_runs_jobs_on_a_separate_worker_process(make_app, golden):
    app = make_app()
    assert app.settings.broker.broker_url and app.store.engine.dialect.name == "postgresql"
    job = app.service.submit(ADMIN, golden("trivial.ipynb"))
    (ran,) = app.pool.run(burst=True)
    assert ran.job_id == job.job_id and ran.status == JobStatus.COMPLETED
    worker_pid = app.pool.procs[0].pid
    live = app.workers.live(0)
    assert any(w.pid == worker_pid and ran.worker_id.startswith(w.worker_id + "/") for w in live)
    assert worker_pid != os.getpid()
