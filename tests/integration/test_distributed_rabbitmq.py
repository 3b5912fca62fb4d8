"""The distributed mode on RabbitMQ, the second supported broker: run, dedupe, cancel."""

from __future__ import annotations

import time

import pytest

from nbjobs.dispatch.celery.publisher import make_celery, queue_name
from nbjobs.models.jobs import FailureReason, JobStatus
from nbjobs.models.parameters import parse_parameters
from nbjobs.models.runtimes import DEFAULT_RUNTIME
from nbjobs.settings import load_settings

from .cluster import (
    AMQP_URL,
    alive,
    fresh_database,
    make_cluster,
    marker_lines,
    marker_notebook,
    unavailable,
    wait_until,
)
from .conftest import ALICE

pytestmark = [pytest.mark.kernel, pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow]


def _purge_default_queue() -> None:
    """Drop messages an earlier run left (their jobs are in a dropped database: harmless, but slow)."""
    app = make_celery(load_settings({}, broker_url=AMQP_URL))
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            try:
                conn.default_channel.queue_purge(queue_name(DEFAULT_RUNTIME.runtime_id))
            except Exception as exc:  # no such queue yet
                if "NOT_FOUND" not in str(exc):
                    raise
    except Exception as exc:
        unavailable(f"RabbitMQ at {AMQP_URL}", exc)
    finally:
        app.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _purge_default_queue()
    tmp = tmp_path_factory.mktemp("amqp")
    for database_url in fresh_database():
        c = make_cluster(tmp, database_url, AMQP_URL)
        try:
            c.w1 = c.start_worker("w1", "--concurrency", "2")
            yield c
        finally:
            c.stop_all()
            c.api.stop(grace=5)


def test_a_job_runs_once_on_rabbitmq_even_when_published_twice(cluster, tmp_path, golden):
    c = cluster
    marker = tmp_path / "amqp"
    marked = parse_parameters({"marker": str(marker), "pause": 0.5})
    job = c.api.service.submit(ALICE, marker_notebook(), parameters=marked)
    c.api.dispatcher.notify(job)
    trivial = c.api.service.submit(ALICE, golden("trivial.ipynb"), parameters=parse_parameters({"x": 1}))
    for j in (job, trivial):
        ended = c.wait_job(j.job_id, lambda j: j.ended)
        assert ended.status == JobStatus.COMPLETED and ended.attempt == 1, ended.failure
    time.sleep(0.5)
    assert len(marker_lines(marker)) == 1
    assert "unsupported" not in c.w1.text().lower()


def test_cancel_on_rabbitmq(cluster, golden):
    c = cluster
    job = c.api.service.submit(ALICE, golden("sleeps.ipynb"))
    c.wait_job(job.job_id, lambda j: j.progress_percent >= 33 and c.api.store.processes(j.job_id)[1])
    pids = c.api.store.processes(job.job_id)
    c.api.service.cancel(ALICE, job.job_id)
    ended = c.wait_job(job.job_id, lambda j: j.ended)
    assert ended.status == JobStatus.CANCELLED and ended.failure.reason == FailureReason.CANCELLED
    # the runner and kernel are swept just after the end is written
    wait_until(lambda: not any(alive(p) for p in pids), 60, "the runner and kernel to be gone")
