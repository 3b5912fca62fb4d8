"""``telemetry.metrics.Metrics``: the gauges read from the store at scrape time (memory and SQLite), the
job events as the services and recovery report them (once, by the write that won), the scheduler's
misfires, the token-free scrape listener, and the sample Grafana dashboard naming only exported metrics."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nbjobs.clock import ManualClock
from nbjobs.errors import CannotCancel, ConfigurationError
from nbjobs.models.accounts import Principal
from nbjobs.models.events import JobCount, PoolState, Slots
from nbjobs.models.jobs import (
    Failure,
    FailureReason,
    Job,
    JobInputs,
    JobStatus,
    JobType,
    JobUpdate,
    new_job_id,
)
from nbjobs.models.runtimes import Runtime
from nbjobs.models.workers import WorkerRecord
from nbjobs.roots.server import Server
from nbjobs.service.jobs.recovery import Recovery
from nbjobs.service.jobs.service import JobService
from nbjobs.settings import load_settings
from nbjobs.store.engine import open_store
from nbjobs.store.memory.jobs import MemoryJobStore
from nbjobs.store.memory.workers import MemoryWorkerStore
from nbjobs.store.workers import SqlWorkerStore
from nbjobs.telemetry.metrics import Metrics
from tests.unit.test_scheduler import World, at, world  # noqa: F401  (the scheduler's fixture)

DOCS = Path(__file__).parents[2] / "docs"
PYTHON = Runtime("rt-py", "Python 3 Standard", "11.0", "python3")
ADVANCED = Runtime("rt-adv", "Python 3 Advanced", "11.0", "python3")
LEASE = 60_000


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The scrape as a Prometheus parser reads it: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }


def value(metrics_or_samples: Metrics | dict, name: str, **labels: str) -> float:
    found = samples(metrics_or_samples) if isinstance(metrics_or_samples, Metrics) else metrics_or_samples
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def job(runtime: Runtime = PYTHON, created: int = 1000, type_: JobType = JobType.EXECUTE_NOTEBOOK) -> Job:
    return Job(new_job_id(), type_, "alice", JobStatus.SUBMITTED, JobInputs(), runtime, created, created)


def record(worker_id: str, heartbeat: int) -> WorkerRecord:
    return WorkerRecord(worker_id, "host", 1, (), ("rt.x",), 2, "online", "0", heartbeat, heartbeat)


@pytest.fixture(params=["memory", "sqlite"])
def stores(request, tmp_path: Path):
    if request.param == "memory":
        yield MemoryJobStore(), MemoryWorkerStore()
        return
    store = open_store(load_settings({}, data_dir=tmp_path))
    yield store, SqlWorkerStore(store.engine)
    store.close()


# -- gauges at scrape time ------------------------------------------------------------------------------


def test_jobs_gauge_counts_jobs_not_ended_by_type_status_and_runtime(stores):
    store, workers = stores
    waiting = [job(), job(), job(ADVANCED), job(type_=JobType.EXECUTE_NOTEBOOK_AS_WEB_TOOL)]
    running, cancelling, done = job(), job(), job()
    for j in (*waiting, running, cancelling, done):
        assert store.create(j, b"{}")
    for j in (running, cancelling, done):
        assert store.claim(j.job_id, 1, "w/0", 2000, LEASE) is not None
    store.transition(cancelling.job_id, JobStatus.CANCELLING, 2100, update=JobUpdate(cancel_requested=True))
    store.transition(done.job_id, JobStatus.COMPLETED, 2200, attempt=1)
    metrics = Metrics()
    metrics.watch_jobs(store.active_counts)
    found = samples(metrics)
    ex, py = "executeNotebook", PYTHON.name
    assert value(found, "nbjobs_jobs", type=ex, status="SUBMITTED", runtime=py) == 2
    assert value(found, "nbjobs_jobs", type=ex, status="SUBMITTED", runtime=ADVANCED.name) == 1
    assert value(found, "nbjobs_jobs", type="executeNotebookAsWebTool", status="SUBMITTED", runtime=py) == 1
    assert value(found, "nbjobs_jobs", type=ex, status="EXECUTING", runtime=py) == 1
    assert value(found, "nbjobs_jobs", type=ex, status="CANCELLING", runtime=py) == 1
    assert not [k for k in found if k[0] == "nbjobs_jobs" and ("status", "COMPLETED") in k[1]]  # ended: none
    assert sum(v for (name, _), v in found.items() if name == "nbjobs_jobs") == 6


def test_workers_online_counts_only_fresh_heartbeats(stores):
    _, workers = stores
    clock = ManualClock(100_000)
    workers.register(record("h/1-a", 95_000))
    workers.register(record("h/2-b", 99_000))
    workers.register(record("h/3-c", 10_000))  # silent for 90 s: gone
    metrics = Metrics()
    metrics.watch_workers(lambda: len(workers.live(clock() - LEASE)))
    assert value(metrics, "nbjobs_workers_online") == 2
    clock.now = 158_000
    assert value(metrics, "nbjobs_workers_online") == 1  # a gauge: read at each scrape, never drifts


def test_pools_and_slots_are_read_at_scrape_time():
    metrics = Metrics()
    pools = [PoolState("python3", 2, 5, 1)]
    slots = Slots(busy=3, total=4)
    metrics.watch_pools(lambda: pools)
    metrics.watch_slots(lambda: slots)
    found = samples(metrics)
    assert value(found, "nbjobs_warm_pool_ready_kernels", kernel="python3") == 2
    assert value(found, "nbjobs_warm_pool_hits_total", kernel="python3") == 5
    assert value(found, "nbjobs_warm_pool_misses_total", kernel="python3") == 1
    assert value(found, "nbjobs_worker_slots", state="busy") == 3
    assert value(found, "nbjobs_worker_slots", state="free") == 1
    pools[0] = PoolState("python3", 0, 6, 1)
    assert value(metrics, "nbjobs_warm_pool_ready_kernels", kernel="python3") == 0


def test_a_failing_source_leaves_the_rest_of_the_scrape_answered(caplog):
    metrics = Metrics()

    def broken() -> list[JobCount]:
        raise RuntimeError("database is down")

    metrics.watch_jobs(broken)
    metrics.watch_workers(lambda: 3)
    found = samples(metrics)
    assert value(found, "nbjobs_workers_online") == 3
    assert not [k for k in found if k[0] == "nbjobs_jobs"]
    assert "could not read job counts" in caplog.text


# -- job events -------------------------------------------------------------------------------------------


def test_submit_and_cancel_of_a_waiting_job_are_counted_once():
    clock = ManualClock(10_000)
    metrics = Metrics()
    service = JobService(MemoryJobStore(), load_settings({}), clock, events=metrics)
    alice = Principal("alice")
    first = service.submit(alice, b"{}", runtime=PYTHON)
    service.submit(alice, b"{}", runtime=PYTHON)
    service.cancel(alice, first.job_id)
    with pytest.raises(CannotCancel):
        service.cancel(alice, first.job_id)  # ended already: no second end
    found = samples(metrics)
    ex = "executeNotebook"
    assert value(found, "nbjobs_jobs_submitted_total", type=ex, runtime=PYTHON.name) == 2
    cancelled = {"type": ex, "status": "CANCELLED", "runtime": PYTHON.name, "reason": "cancelled"}
    assert value(found, "nbjobs_jobs_ended_total", **cancelled) == 1
    # it never started: no duration observed
    assert (
        value(found, "nbjobs_job_duration_seconds_count", type=ex, status="CANCELLED", runtime=PYTHON.name)
        == 0
    )


def test_cancel_of_a_running_job_is_no_end_yet():
    clock = ManualClock(10_000)
    metrics = Metrics()
    store = MemoryJobStore()
    service = JobService(store, load_settings({}), clock, events=metrics)
    alice = Principal("alice")
    submitted = service.submit(alice, b"{}", runtime=PYTHON)
    store.claim(submitted.job_id, 1, "w/0", 11_000, LEASE)
    assert service.cancel(alice, submitted.job_id).status == JobStatus.CANCELLING
    assert not [k for k in samples(metrics) if k[0] == "nbjobs_jobs_ended_total"]  # its supervisor ends it


def test_started_observes_queue_wait_and_ended_the_duration_in_seconds():
    metrics = Metrics()
    j = job(created=1_000)
    started = Job(**{**j.__dict__, "status": JobStatus.EXECUTING, "start_time": 3_500, "attempt": 1})
    metrics.started(started)
    failure = Failure(FailureReason.CELL_ERROR, "boom")
    ended = Job(**{**started.__dict__, "status": JobStatus.FAILED, "end_time": 13_500, "failure": failure})
    metrics.ended(ended)
    metrics.kernel_started(started, 0.8, warm=True)
    found = samples(metrics)
    labels = {"type": "executeNotebook", "runtime": PYTHON.name}
    assert value(found, "nbjobs_jobs_started_total", **labels) == 1
    assert value(found, "nbjobs_job_queue_wait_seconds_sum", **labels) == 2.5
    assert value(found, "nbjobs_job_queue_wait_seconds_bucket", le="2.5", **labels) == 1
    assert value(found, "nbjobs_job_queue_wait_seconds_bucket", le="1.0", **labels) == 0
    assert value(found, "nbjobs_job_duration_seconds_sum", status="FAILED", **labels) == 10
    assert value(found, "nbjobs_jobs_ended_total", status="FAILED", reason="cell_error", **labels) == 1
    assert value(found, "nbjobs_kernel_start_seconds_count", kernel="python3", mode="warm") == 1
    assert value(found, "nbjobs_kernel_start_seconds_bucket", kernel="python3", mode="warm", le="1.0") == 1


def test_the_reaper_ends_a_lost_job_once_however_often_it_runs():
    clock = ManualClock(10_000)
    metrics = Metrics()
    store = MemoryJobStore()
    lost = job()
    store.create(lost, b"{}")
    store.claim(lost.job_id, 1, "h/1-a/0", 10_000, LEASE)
    recovery = Recovery(store, MemoryWorkerStore(), clock, lease_ms=LEASE, events=metrics)
    assert recovery.reap_expired() == []  # lease still valid: nothing
    clock.now = 10_000 + LEASE + 1
    assert len(recovery.reap_expired()) == 1
    assert recovery.reap_expired() == []
    ended = {"type": "executeNotebook", "status": "FAILED", "runtime": PYTHON.name, "reason": "worker_lost"}
    assert value(metrics, "nbjobs_jobs_ended_total", **ended) == 1
    # the fenced write of the lost worker's supervisor now finds nothing: its end is never counted
    assert store.transition(lost.job_id, JobStatus.COMPLETED, clock(), attempt=1) is None


def test_scheduler_misfires_are_reported_by_the_tick(world: World):  # noqa: F811
    world.create(minute="0", hour="*")
    report = world.tick_at(at("2024-05-17T11:20:00"))  # down since 07:00: the 08:00 occasion fires late
    assert (report.fired, report.misfired) == (1, 1)
    on_time = world.tick_at(at("2024-05-17T12:00:05"))
    assert (on_time.fired, on_time.skipped, on_time.misfired) == (0, 1, 0)  # the 08:00 run still runs
    metrics = Metrics()
    for r in (report, on_time):
        metrics.scheduler_ticked(started=r.fired, queued=r.queued, skipped=r.skipped, misfired=r.misfired)
    assert value(metrics, "nbjobs_scheduler_fires_total", outcome="started") == 1
    assert value(metrics, "nbjobs_scheduler_fires_total", outcome="skipped") == 1
    assert value(metrics, "nbjobs_scheduler_misfires_total") == 1


def test_notification_deliveries_are_counted_by_outcome():
    metrics = Metrics()
    metrics.notification_delivered("sent")
    metrics.notification_delivered("sent")
    metrics.notification_delivered("failed")
    assert value(metrics, "nbjobs_notification_deliveries_total", outcome="sent") == 2
    assert value(metrics, "nbjobs_notification_deliveries_total", outcome="failed") == 1


def test_each_metrics_has_its_own_registry():
    one, two = Metrics(), Metrics()
    one.notification_delivered("sent")
    assert value(two, "nbjobs_notification_deliveries_total", outcome="sent") == 0


# -- the scrape listener ------------------------------------------------------------------------------------


def test_the_scrape_listener_answers_without_a_token_on_loopback():
    metrics = Metrics()
    metrics.webhook_delivered("accepted")
    listener = metrics.serve("127.0.0.1", 0)
    try:
        assert listener.server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{listener.port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
            assert answer.headers["content-type"].startswith("text/plain")
        found = {
            (s.name, s.labels.get("outcome")): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }
        assert found[("nbjobs_webhook_deliveries_total", "accepted")] == 1
    finally:
        listener.stop()


def test_server_starts_the_listener_only_when_a_port_is_set_and_stops_it(tmp_path: Path):
    off = Server.from_settings(load_settings({}, data_dir=tmp_path / "off", workers=0))
    try:
        off.start()
        assert off.metrics_listener is None
    finally:
        off.stop(grace=5)
    with socket_port() as port:
        pass
    on = Server.from_settings(load_settings({}, data_dir=tmp_path / "on", workers=0, metrics_port=port))
    on.start()
    try:
        assert on.metrics_listener is not None and on.metrics_listener.port == port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            names = {f.name for f in text_string_to_metric_families(answer.read().decode())}
        assert {"nbjobs_jobs", "nbjobs_workers_online", "nbjobs_jobs_ended"} <= names
    finally:
        on.stop(grace=5)
    assert on.metrics_listener is None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def test_a_metrics_port_out_of_range_is_refused():
    with pytest.raises(ConfigurationError, match="NBJOBS_METRICS_PORT"):
        load_settings({"NBJOBS_METRICS_PORT": "70000"})
    assert load_settings({"NBJOBS_METRICS_PORT": "9109"}).metrics.metrics_port == 9109
    assert load_settings({}).metrics.metrics_host == "127.0.0.1"


class socket_port:
    """A free loopback port (closed again on exit, so the server can bind it)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# -- the Grafana dashboard -----------------------------------------------------------------------------------


def exported_names() -> set[str]:
    """Every sample name a fully wired Metrics exposes once each event happened."""
    metrics = Metrics()
    metrics.watch_jobs(lambda: [JobCount(JobType.EXECUTE_NOTEBOOK, JobStatus.EXECUTING, "rt", 1)])
    metrics.watch_workers(lambda: 1)
    metrics.watch_pools(lambda: [PoolState("python3", 1, 1, 1)])
    metrics.watch_slots(lambda: Slots(1, 2))
    j = job()
    metrics.submitted(j)
    metrics.started(Job(**{**j.__dict__, "start_time": 2000}))
    metrics.kernel_started(j, 1.0, warm=False)
    metrics.ended(Job(**{**j.__dict__, "status": JobStatus.COMPLETED, "start_time": 2000, "end_time": 3000}))
    metrics.scheduler_ticked(started=1, queued=0, skipped=0, misfired=1)
    metrics.webhook_delivered("accepted")
    metrics.notification_delivered("sent")
    metrics.http_request("/arcgis/admin", "GET", 200, 0.01)
    return {name for name, _ in samples(metrics)}


def test_the_grafana_dashboard_is_json_and_every_panel_queries_exported_metrics():
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exported = exported_names()
    panels = dashboard["panels"]
    titles = {p["title"] for p in panels}
    assert len(titles) == len(panels) >= 7
    for panel in panels:
        exprs = [t["expr"] for t in panel["targets"]]
        assert exprs, panel["title"]
        for expr in exprs:
            named = set(re.findall(r"\bnbjobs_[a-z_]+", expr))
            assert named, f"{panel['title']}: {expr}"
            assert named <= exported, f"{panel['title']}: {named - exported} are not exported"


# -- the roots wire one Metrics per process --------------------------------------------------------------


def test_the_server_hands_its_one_metrics_to_every_reporter(tmp_path: Path):
    server = Server.from_settings(load_settings({}, data_dir=tmp_path, workers=2))
    try:
        m = server.metrics
        assert server.supervisor is not None and server.supervisor.events is m
        assert server.service.events is m and server.recovery.events is m
        assert server.web.metrics.metrics is m and server.webhooks.delivered == m.webhook_delivered
        names = {name for name, _ in samples(m)}
        assert {"nbjobs_workers_online", "nbjobs_worker_slots"} <= names
        assert value(m, "nbjobs_worker_slots", state="free") == 0  # no thread started yet
        assert (
            "# TYPE nbjobs_jobs_submitted_total counter" in m.render().decode()
        )  # no series before a submit
        assert value(m, "nbjobs_warm_pool_ready_kernels", kernel="python3") == 0  # nothing started yet
    finally:
        server.stop()


@pytest.mark.postgres
def test_a_worker_reports_its_own_slots_and_pools_but_not_the_store_gauges(tmp_path: Path, postgres_url: str):
    from nbjobs.roots.worker import Worker

    settings = load_settings(
        {}, data_dir=tmp_path, database_url=postgres_url, broker_url="redis://127.0.0.1:6379/15"
    )
    worker = Worker.from_settings(settings, concurrency=3)
    try:
        m = worker.metrics
        assert worker.supervisor.events is m and worker.node.recovery.events is m
        found = samples(m)
        assert value(found, "nbjobs_worker_slots", state="free") == 3
        assert ("nbjobs_warm_pool_hits_total", (("kernel", "python3"),)) in found
        assert not {name for name, _ in found} & {"nbjobs_jobs", "nbjobs_workers_online"}
    finally:
        worker.store.close()
