from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nbjobs.models.accounts import Principal
from nbjobs.models.jobs import Job
from nbjobs.roots.server import Server
from nbjobs.settings import load_settings

ADMIN = Principal("admin", is_admin=True)
ALICE = Principal("alice")
# make_app's test-friendly settings (the Celery variant in test_semantics_celery.py uses them too)
APP_DEFAULTS: dict[str, object] = dict(
    workers=1, poll_seconds=0.1, heartbeat_seconds=0.5, cancel_grace_seconds=1.0, kill_grace_seconds=1.0
)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Build an Server on a temp SQLite store with test-friendly timings; stopped at teardown."""
    apps: list[Server] = []

    def make(**overrides) -> Server:
        values: dict[str, object] = dict(data_dir=tmp_path / "data", **APP_DEFAULTS)
        values.update(overrides)
        app = Server.from_settings(load_settings({}, **values))
        app.prepare()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop(grace=10)


def wait_for(app: Server, job_id: str, predicate: Callable[[Job], bool], timeout: float = 60) -> Job:
    """Poll the store until ``predicate(job)`` holds."""
    end = time.monotonic() + timeout
    while True:
        job = app.store.get(job_id)
        if job is not None and predicate(job):
            return job
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting on {job_id}: {job}")
        time.sleep(0.05)
