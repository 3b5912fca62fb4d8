"""Several schedulers over one SQL database (SQLite, PostgreSQL): each occasion fires exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import insert

from nbjobs.clock import ManualClock
from nbjobs.models.automation import Firing, RunStatus, TaskRun, TaskState
from nbjobs.roots.server import Server
from nbjobs.service.automation.tasks import TaskSpec
from nbjobs.service.content.items import ItemFields
from nbjobs.settings import load_settings
from nbjobs.store.tables import task_runs
from tests.conftest import notebook_bytes

MINUTE = 60_000
START = 1_716_000_000_000 - 1_716_000_000_000 % MINUTE  # on a minute boundary


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def replicas(request, tmp_path: Path) -> Iterator[tuple[Server, Server, ManualClock]]:
    """Two nbjobs instances (two engines, two schedulers) on one database, no workers."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    clock = ManualClock(START)
    settings = load_settings({}, data_dir=tmp_path, database_url=url, workers=0)
    first = Server.from_settings(settings, clock=clock)
    first.prepare()
    second = Server.from_settings(settings, clock=clock)
    second.prepare()
    first.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    first.users.add("alice", "password-alice")
    yield first, second, clock
    first.store.close()
    second.store.close()


def _tasks(nb: Server, n: int) -> list[str]:
    alice = nb.users.get("alice")
    item = nb.items.add(
        alice.principal(), "alice", notebook_bytes("trivial.ipynb"), type="Notebook", fields=ItemFields()
    )
    spec = TaskSpec(type="ExecuteNotebook", item_id=item.item_id, minute="*/1")
    return [nb.tasks.create(alice, "alice", spec).task_id for _ in range(n)]


def test_two_schedulers_in_threads_fire_each_occasion_once(replicas):
    first, second, clock = replicas
    task_ids = _tasks(first, 12)
    for minute in (1, 2, 3):
        now = START + minute * MINUTE
        clock.now = now
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def tick(
            nb: Server, now: int = now, barrier: threading.Barrier = barrier, errors: list = errors
        ) -> None:
            try:
                barrier.wait()
                nb.scheduler.tick(now)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=tick, args=(nb,)) for nb in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    for task_id in task_ids:
        runs = first.tasks.store.runs(task_id)
        assert sorted(r.scheduled_for for r in runs) == [START + m * MINUTE for m in (1, 2, 3)]
        # the first run still executes, so the later occasions were skipped, once each
        assert sorted(r.status for r in runs) == [RunStatus.EXECUTING, RunStatus.SKIPPED, RunStatus.SKIPPED]
    assert first.store.count() == len(task_ids)  # one job per started run, not one per scheduler
    jobs = first.store.list(limit=100)
    assert {j.inputs.task_id for j in jobs} == set(task_ids)


def test_the_unique_occasion_key_refuses_a_second_run(replicas):
    first, second, clock = replicas
    (task_id,) = _tasks(first, 1)
    task = first.tasks.store.get(task_id)
    occasion = task.next_fire
    run = TaskRun("a" * 32, task_id, occasion, RunStatus.SKIPPED, START, START)
    # Someone already recorded this occasion (e.g. a scheduler that crashed after its insert):
    with first.store.engine.begin() as conn:
        conn.execute(insert(task_runs).values(**{**_row(run), "run_id": "b" * 32}))
    firing = Firing(next_fire=occasion + MINUTE, state=TaskState.ACTIVE, counted=False, run=run)
    assert second.tasks.store.fire(task_id, occasion, firing) is False
    assert second.tasks.store.get(task_id).next_fire == occasion  # rolled back with the insert
    # and the compare-and-set alone refuses a stale expectation
    assert second.tasks.store.fire(task_id, occasion - MINUTE, firing) is False


def _row(run: TaskRun) -> dict:
    return {
        "run_id": run.run_id,
        "task_id": run.task_id,
        "scheduled_for": run.scheduled_for,
        "status": str(run.status),
        "result": run.result,
        "job_id": run.job_id,
        "created": run.created,
        "updated": run.updated,
    }
