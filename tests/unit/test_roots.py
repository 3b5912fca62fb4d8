"""The composition roots: each process gets what it needs and nothing else, and wiring has no side
effects beyond opening (and migrating) the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbjobs.dispatch.celery.publisher import CeleryDispatcher
from nbjobs.dispatch.local import LocalDispatcher
from nbjobs.errors import ConfigurationError
from nbjobs.roots.server import Server
from nbjobs.roots.worker import Worker
from nbjobs.settings import load_settings
from nbjobs.web.app import create_app
from nbjobs.web.services import WebServices

BROKER = "redis://127.0.0.1:6379/15"  # never contacted: wiring a Celery app does not connect


def _duties(keeper) -> list[str]:
    return [d.name for d in keeper.duties]


def test_the_embedded_server_runs_jobs_in_its_own_pool(tmp_path: Path):
    server = Server.from_settings(load_settings({}, data_dir=tmp_path, workers=0))
    try:
        assert isinstance(server.pool, LocalDispatcher) and server.dispatcher is server.pool
        assert server.supervisor is not None and server.pool.supervisor is server.supervisor
        assert _duties(server.housekeeper) == [
            "lease-reaper", "purge-jobs", "purge-webtool-calls", "scheduler", "item-write-back",
            "ship-logs", "purge-logs", "notify-scan", "notify-send", "purge-notifications", "trim-heap",
            "lab-cull", "lab-check",
        ]  # fmt: skip
        assert server.interactive.host is server.supervisor.lab  # it hosts users' Jupyter servers
    finally:
        server.stop()


def test_a_server_in_broker_mode_has_no_pool_and_no_supervisor(tmp_path: Path):
    server = Server.from_settings(load_settings({}, data_dir=tmp_path, broker_url=BROKER))
    try:
        assert server.pool is None and server.supervisor is None
        assert isinstance(server.dispatcher, CeleryDispatcher)
        assert "outbox-reconcile" in _duties(server.housekeeper)
        # users' Jupyter servers run on the workers: the API server culls (any may) but checks none
        assert "lab-cull" in _duties(server.housekeeper) and "lab-check" not in _duties(server.housekeeper)
        assert server.interactive.host is None
    finally:
        server.stop()


def test_wiring_writes_nothing_until_prepare(tmp_path: Path):
    server = Server.from_settings(load_settings({}, data_dir=tmp_path, workers=0))
    try:
        assert server.runtimes.store.list() == []  # the default runtime is a first write of prepare
        assert not (tmp_path / "jupyter").exists()
        server.prepare()
        assert [r.is_default for r in server.runtimes.store.list()] == [True]
        server.prepare()  # again: nothing more
        assert len(server.runtimes.store.list()) == 1
    finally:
        server.stop()


def test_the_web_layer_gets_the_services_not_the_root(tmp_path: Path):
    server = Server.from_settings(load_settings({}, data_dir=tmp_path, workers=0))
    try:
        app = create_app(server.web)
        assert isinstance(app.state.services, WebServices)
        assert not any(isinstance(v, Server) for v in vars(app.state.services).values())
        assert server.web.jobs is server.service and server.web.runtimes is server.runtimes
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"database_url": "postgresql://x/y"}, "a broker is required"),
        ({"broker_url": BROKER}, "shared database"),
    ],
)
def test_a_worker_needs_a_broker_and_a_shared_database(tmp_path: Path, given, missing):
    with pytest.raises(ConfigurationError, match=missing):
        Worker.from_settings(load_settings({}, data_dir=tmp_path, **given))


@pytest.mark.postgres
def test_a_worker_has_its_heartbeat_and_the_lease_reaper_and_no_web(tmp_path: Path, postgres_url: str):
    worker = Worker.from_settings(
        load_settings({}, data_dir=tmp_path, database_url=postgres_url, broker_url=BROKER), concurrency=3
    )
    try:
        assert _duties(worker.node.duties) == [
            "worker-heartbeat",
            "lease-reaper",
            "ship-logs",
            "lab-check",
            "trim-heap",
        ]
        assert worker.supervisor.lab is not None and worker.interactive is not None  # hosts users' servers
        assert worker.node.concurrency == 3 and worker.node.supervisor is worker.supervisor
        assert [r.is_default for r in worker.node.runtimes] == [True]
        assert worker.node.listen_cancels is not None  # PostgreSQL: cancels arrive by LISTEN/NOTIFY
        assert not hasattr(worker, "web")
    finally:
        worker.store.close()
