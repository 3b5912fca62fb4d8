"""The metrics move as real jobs run: an embedded server scraped through ``/admin/metrics`` (real
kernels, the warm pool) and a Celery cluster whose `nbjobs worker` is scraped on its ``--metrics-port``,
each read with the Prometheus text parser and checked for the exact amounts the jobs caused."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from nbjobs.models.accounts import ORG_ADMIN
from nbjobs.models.jobs import JobStatus
from nbjobs.web.app import create_app
from tests.waiting import eventually

from .cluster import REDIS_URL, fresh_database, make_cluster, unavailable, wait_until
from .conftest import ALICE, wait_for

pytestmark = pytest.mark.kernel

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def wait_warm(app, count: int = 1, timeout: float = 60) -> None:
    pool = app.supervisor.pool
    end = time.monotonic() + timeout
    while pool.warm_count() < count:
        assert time.monotonic() < end, "the warm pool never filled"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_embedded_jobs_move_ends_durations_queue_waits_kernel_starts_and_warm_pool_hits(make_app, golden):
    app = make_app(warm_pool_size=1)
    app.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    admin = app.users.add("admin", "correct horse battery", role=ORG_ADMIN)
    token = app.tokens.issue(admin).token
    app.pool.start(1)
    with TestClient(create_app(app.web), base_url="https://testserver") as client:

        def scrape() -> Samples:
            answer = client.get("/arcgis/admin/metrics", headers={"authorization": f"Bearer {token}"})
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
            return parse(answer.text)

        wait_warm(app)
        before = scrape()
        ended = []
        for name in ("trivial.ipynb", "trivial.ipynb", "raises.ipynb"):
            wait_warm(app)  # each job finds a ready kernel: a hit
            job = app.service.submit(ALICE, golden(name))
            ended.append(wait_for(app, job.job_id, lambda j: j.ended))
        assert [j.status for j in ended] == [JobStatus.COMPLETED, JobStatus.COMPLETED, JobStatus.FAILED]

        def settled() -> Samples | None:
            """The end is written just before its counter moves and its slot frees."""
            now = scrape()
            ends = moved(before, now, "nbjobs_jobs_ended_total")
            return now if ends == 3 and value(now, "nbjobs_worker_slots", state="busy") == 0 else None

        after = eventually(settled, what="the last end counted and its slot free")

    ex, runtime = "executeNotebook", ended[0].runtime.name
    assert moved(before, after, "nbjobs_jobs_submitted_total", type=ex, runtime=runtime) == 3
    assert moved(before, after, "nbjobs_jobs_started_total", type=ex, runtime=runtime) == 3
    completed = {"type": ex, "status": "COMPLETED", "runtime": runtime, "reason": "none"}
    failed = {"type": ex, "status": "FAILED", "runtime": runtime, "reason": "cell_error"}
    assert moved(before, after, "nbjobs_jobs_ended_total", **completed) == 2
    assert moved(before, after, "nbjobs_jobs_ended_total", **failed) == 1
    assert moved(before, after, "nbjobs_job_duration_seconds_count", status="COMPLETED") == 2
    assert moved(before, after, "nbjobs_job_duration_seconds_count", status="FAILED") == 1
    durations = sum((j.end_time - j.start_time) / 1000 for j in ended)
    assert moved(before, after, "nbjobs_job_duration_seconds_sum") == pytest.approx(durations, abs=1e-6)
    assert moved(before, after, "nbjobs_job_queue_wait_seconds_count", runtime=runtime) == 3
    assert moved(before, after, "nbjobs_kernel_start_seconds_count", kernel="python3", mode="warm") == 3
    assert moved(before, after, "nbjobs_kernel_start_seconds_count", mode="cold") == 0
    assert 0 < moved(before, after, "nbjobs_kernel_start_seconds_sum") < 3 * 30  # real start times
    assert moved(before, after, "nbjobs_warm_pool_hits_total", kernel="python3") == 3
    assert moved(before, after, "nbjobs_warm_pool_misses_total", kernel="python3") == 0
    assert total(after, "nbjobs_jobs") == 0  # nothing waits or runs now
    assert value(after, "nbjobs_worker_slots", state="busy") == 0
    assert value(after, "nbjobs_worker_slots", state="free") == 1
    assert (
        value(after, "nbjobs_http_requests_total", route="/arcgis/admin/metrics", method="GET", status="200")
        >= 1
    )


def test_embedded_without_a_warm_pool_every_take_is_a_miss_and_the_kernel_starts_cold(make_app, golden):
    app = make_app(warm_pool_size=0)
    app.pool.start(1)
    job = app.service.submit(ALICE, golden("trivial.ipynb"))
    assert wait_for(app, job.job_id, lambda j: j.ended).status == JobStatus.COMPLETED
    samples = parse(app.metrics.render().decode())
    assert value(samples, "nbjobs_warm_pool_misses_total", kernel="python3") == 1
    assert value(samples, "nbjobs_warm_pool_hits_total", kernel="python3") == 0
    assert value(samples, "nbjobs_kernel_start_seconds_count", kernel="python3", mode="cold") == 1
    assert value(samples, "nbjobs_kernel_start_seconds_sum", kernel="python3", mode="cold") > 0.05


def scrape_url(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as answer:  # no token: the scrape listener
        return parse(answer.read().decode())


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_celery_worker_serves_its_own_metrics_and_the_api_the_store_gauges(tmp_path, golden):
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        unavailable(f"Redis at {REDIS_URL}", exc)
    client.flushdb()
    try:
        for database_url in fresh_database():
            cluster = make_cluster(tmp_path, database_url, REDIS_URL)
            try:
                check_celery_metrics(cluster, golden)
            finally:
                cluster.stop_all()
                cluster.api.stop(grace=5)
    finally:
        client.flushdb()
        client.close()


def check_celery_metrics(cluster, golden) -> None:
    port = free_port()
    cluster.start_worker("w1", "--concurrency", "2", "--metrics-port", str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    before = scrape_url(url)
    jobs = [cluster.api.service.submit(ALICE, golden("trivial.ipynb")) for _ in range(2)]
    jobs.append(cluster.api.service.submit(ALICE, golden("raises.ipynb")))
    ended = [cluster.wait_job(j.job_id, lambda j: j.ended) for j in jobs]
    assert [j.status for j in ended] == [JobStatus.COMPLETED, JobStatus.COMPLETED, JobStatus.FAILED]

    def three_ends() -> Samples | None:
        """The end is written just before its counter moves and its slot frees."""
        now = scrape_url(url)
        ends = moved(before, now, "nbjobs_jobs_ended_total")
        return now if ends == 3 and value(now, "nbjobs_worker_slots", state="busy") == 0 else None

    # the worker counted the ends it wrote, and their durations, waits and kernel starts
    worker = wait_until(three_ends, 60, "the worker's end counters")
    assert moved(before, worker, "nbjobs_jobs_ended_total", status="COMPLETED", reason="none") == 2
    assert moved(before, worker, "nbjobs_jobs_ended_total", status="FAILED", reason="cell_error") == 1
    assert moved(before, worker, "nbjobs_jobs_started_total") == 3
    assert moved(before, worker, "nbjobs_job_duration_seconds_count") == 3
    assert moved(before, worker, "nbjobs_job_queue_wait_seconds_count") == 3
    assert moved(before, worker, "nbjobs_kernel_start_seconds_count", kernel="python3") == 3
    hits = moved(before, worker, "nbjobs_warm_pool_hits_total")
    assert hits + moved(before, worker, "nbjobs_warm_pool_misses_total") == 3
    assert value(worker, "nbjobs_worker_slots", state="busy") == 0
    assert value(worker, "nbjobs_worker_slots", state="free") == 2
    assert total(worker, "nbjobs_jobs") == 0 and not total(worker, "nbjobs_workers_online")
    # the API server: submits (its own events) and the store's state, the same for every replica
    api = parse(cluster.api.metrics.render().decode())
    assert total(api, "nbjobs_jobs_submitted_total") == 3
    assert total(api, "nbjobs_jobs_ended_total") == 0  # the worker wrote the ends, not the API
    assert value(api, "nbjobs_workers_online") == 1
    assert total(api, "nbjobs_jobs") == 0
