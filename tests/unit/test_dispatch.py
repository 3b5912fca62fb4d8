"""The dispatch seam without a broker: the outbox reconciler, the Celery configuration, the machines view."""

from __future__ import annotations

import sys

import pytest

from nbjobs.clock import ManualClock
from nbjobs.dispatch.celery.publisher import TASK_NAME, make_celery, queue_name, task_id
from nbjobs.dispatch.celery.reconciler import Reconciler
from nbjobs.dispatch.local import LocalDispatcher
from nbjobs.errors import ConfigurationError, PermissionDenied
from nbjobs.models.accounts import User
from nbjobs.models.jobs import Job, JobInputs, JobStatus, Waiting, new_job_id
from nbjobs.models.runtimes import DEFAULT_RUNTIME
from nbjobs.models.workers import WorkerRecord
from nbjobs.service.system.machines import MachineService, list_machines
from nbjobs.settings import load_settings
from nbjobs.store.engine import open_store
from nbjobs.store.outbox import SqlOutbox
from nbjobs.store.workers import SqlWorkerStore


class FakeBroker:
    """Records what would be published; reports a queue depth the test sets."""

    def __init__(self, outbox: SqlOutbox, clock: ManualClock) -> None:
        self.outbox = outbox
        self.clock = clock
        self.sent: list[tuple[str, int]] = []
        self.depths: dict[str, int | None] = {}

    def publish(self, waiting: list[Waiting]) -> int:
        self.sent.extend((w.job_id, w.attempt + 1) for w in waiting)
        self.outbox.mark_dispatched([w.job_id for w in waiting], self.clock())
        return len(waiting)

    def depth(self, queue: str) -> int | None:
        return self.depths.get(queue, 0)


@pytest.fixture
def parts(tmp_path):
    store = open_store(load_settings({}, data_dir=tmp_path))
    clock = ManualClock(1_000_000)
    outbox = SqlOutbox(store.engine)
    broker = FakeBroker(outbox, clock)
    yield store, clock, outbox, broker, Reconciler(outbox, broker, clock, redispatch_seconds=60)
    store.close()


def _submit(store, clock) -> Job:
    now = clock()
    job = Job(
        job_id=new_job_id(),
        type="executeNotebook",
        username="alice",
        status=JobStatus.SUBMITTED,
        inputs=JobInputs(),
        runtime=DEFAULT_RUNTIME,
        date_created=now,
        revision=now,
    )
    store.create(job, b"{}")
    return job


def test_a_job_never_published_is_published_after_a_grace(parts):
    store, clock, outbox, broker, reconciler = parts
    job = _submit(store, clock)
    assert reconciler.tick() == 0  # the submitter's own publish gets its chance first
    clock.advance(5_001)
    assert reconciler.tick() == 1
    assert broker.sent == [(job.job_id, 1)]
    assert reconciler.tick() == 0  # published now: not again until it is stale


def test_a_stale_job_is_published_again_only_when_its_queue_lost_messages(parts):
    store, clock, outbox, broker, reconciler = parts
    jobs = [_submit(store, clock) for _ in range(3)]
    outbox.mark_dispatched([j.job_id for j in jobs], clock())
    clock.advance(61_000)
    queue = queue_name(DEFAULT_RUNTIME.runtime_id)
    broker.depths[queue] = 3  # all three messages still wait: a long queue, not a lost one
    assert reconciler.tick() == 0
    broker.depths[queue] = 1  # two were lost (a broker restart without persistence)
    assert reconciler.tick() == 2
    broker.depths[queue] = None  # the broker cannot tell: publish what is stale (duplicates are harmless)
    clock.advance(61_000)
    assert reconciler.tick() == 3


def test_claimed_and_ended_jobs_are_never_published_again(parts):
    store, clock, outbox, broker, reconciler = parts
    job = _submit(store, clock)
    store.claim(job.job_id, 1, "host/1-x/0", clock(), 60_000)
    clock.advance(120_000)
    assert reconciler.tick() == 0 and broker.sent == []


def test_the_celery_app_carries_the_delivery_settings():
    app = make_celery(load_settings({}, broker_url="redis://127.0.0.1:1/0"))
    conf = app.conf
    assert conf.task_ignore_result and conf.task_acks_late is False
    assert conf.worker_prefetch_multiplier == 1 and conf.worker_disable_prefetch is True
    assert conf.result_backend is None
    amqp = make_celery(load_settings({}, broker_url="amqp://guest:guest@127.0.0.1:1//"))
    assert amqp.conf.worker_disable_prefetch is False  # Redis only; RabbitMQ relies on multiplier 1
    assert task_id("jabc", 2) == "jabc:2" and TASK_NAME == "nbjobs.run_job"


def test_a_bad_broker_url_or_missing_celery_is_an_actionable_error(monkeypatch):
    with pytest.raises(ConfigurationError, match="redis:// or amqp://"):
        make_celery(load_settings({}, broker_url="kafka://somewhere"))
    monkeypatch.setitem(sys.modules, "celery", None)  # as if the extra were not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'nbjobs\[celery\]'"):
        make_celery(load_settings({}, broker_url="redis://127.0.0.1:6379/0"))


def test_the_machines_view_lists_live_workers_to_admins_only(parts):
    store, clock, *_ = parts
    workers = SqlWorkerStore(store.engine)
    now = clock()
    runtimes = ({"id": "r", "name": "R"},)
    workers.register(WorkerRecord("host/1-a", "host", 1, runtimes, ("rt.r",), 2, "online", "0", now, now))
    workers.register(WorkerRecord("host/2-b", "host", 2, (), (), 1, "online", "0", now - 10**6, now - 10**6))
    job = _submit(store, clock)
    store.claim(job.job_id, 1, "host/1-a/thread-0", now, 60_000)
    admin = User("admin", "", "org_admin", (), 0, 0)
    machines = list_machines(admin, workers, store, clock, lease_ms=60_000)
    assert [(m.worker.worker_id, m.running_jobs) for m in machines] == [("host/1-a", (job.job_id,))]
    with pytest.raises(PermissionDenied):
        list_machines(User("bob", "", "org_user", (), 0, 0), workers, store, clock, 60_000)


def test_the_machines_view_lists_the_embedded_pool_first_with_its_running_jobs(parts):
    store, clock, *_ = parts
    workers = SqlWorkerStore(store.engine)
    now = clock()
    workers.register(WorkerRecord("other/1-a", "other", 1, (), (), 1, "online", "0", now, now))
    pool = LocalDispatcher(store, load_settings({}), clock, "host/7-b", supervisor=None)
    served = ({"id": "r", "name": "R"},)
    machines = MachineService(workers, store, clock, lease_ms=60_000, local=lambda: pool.machine(served))
    job = _submit(store, clock)
    store.claim(job.job_id, 1, "host/7-b/0", now, 60_000)
    clock.advance(5_000)
    here, other = machines.list(User("admin", "", "org_admin", (), 0, 0))
    assert (here.local, other.local) == (True, False)
    assert (here.worker.worker_id, here.worker.hostname) == ("host/7-b", "host")
    assert here.running_jobs == (job.job_id,)
    assert here.worker.runtimes == served and here.worker.state == "online"
    assert here.worker.last_heartbeat == clock() and here.worker.concurrency == 0  # no thread started
    assert other.worker.worker_id == "other/1-a" and other.running_jobs == ()
    with pytest.raises(PermissionDenied):
        machines.list(User("bob", "", "org_user", (), 0, 0))
