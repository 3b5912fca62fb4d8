"""The distributed mode end to end on Redis: real `nbjobs worker` processes, PostgreSQL, the API side
publishing through Celery. One cluster per module; the tests run in file order and share it."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import nbformat
import pytest

from nbjobs.dispatch.celery.publisher import queue_name
from nbjobs.models.jobs import ENDED, FailureReason, JobInputs, JobStatus, Waiting
from nbjobs.models.parameters import parse_parameters
from nbjobs.service.authz import OPERATOR
from nbjobs.service.runtimes.fields import RuntimeFields

from .cluster import (
    REDIS_URL,
    Cluster,
    alive,
    fresh_database,
    make_cluster,
    marker_lines,
    marker_notebook,
    unavailable,
    wait_until,
)
from .conftest import ALICE

pytestmark = [pytest.mark.kernel, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def _redis():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        unavailable(f"Redis at {REDIS_URL}", exc)
    return client


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    client = _redis()
    client.flushdb()
    tmp = tmp_path_factory.mktemp("cluster")
    for database_url in fresh_database():
        c = make_cluster(tmp, database_url, REDIS_URL)
        second = c.api.runtimes.register(OPERATOR, RuntimeFields(name="Second", image_id="python3"))
        c.second = second
        c.default = c.api.runtimes.default()
        try:
            c.w1 = c.start_worker("w1", "--concurrency", "2")
            c.w2 = c.start_worker("w2", "--runtime", "Second", "--concurrency", "1")
            yield c
        finally:
            c.stop_all()
            c.api.stop(grace=5)
            client.flushdb()
            client.close()


def _submit_marker(c: Cluster, path, *, pause: float = 0, runtime=None, **kwargs):
    params = parse_parameters({"marker": str(path), "pause": pause})
    rt = None if runtime is None else _runtime(runtime)
    return c.api.service.submit(ALICE, marker_notebook(), parameters=params, runtime=rt, **kwargs)


def _runtime(spec):
    from nbjobs.models.runtimes import Runtime

    return Runtime(spec.runtime_id, spec.name, spec.version, spec.kernel_name)


def test_jobs_run_on_separate_workers_routed_by_runtime(cluster, golden, tmp_path):
    c = cluster
    w1, w2 = c.record(c.w1), c.record(c.w2)
    assert w1.queues == (queue_name(c.default.runtime_id),) and w1.concurrency == 2
    assert w2.runtimes == ({"id": c.second.runtime_id, "name": "Second"},)

    x41 = parse_parameters({"x": 41})
    with_params = c.api.service.submit(ALICE, golden("trivial.ipynb"), parameters=x41)
    on_default = [_submit_marker(c, tmp_path / f"d{i}") for i in range(2)]
    on_second = [_submit_marker(c, tmp_path / f"s{i}", runtime=c.second) for i in range(2)]
    for job in [with_params, *on_default, *on_second]:
        ended = c.wait_job(job.job_id, lambda j: j.ended)
        assert ended.status == JobStatus.COMPLETED, ended.failure
        assert ended.attempt == 1
    executed = nbformat.reads(c.api.store.get_blob(with_params.job_id, "output").decode(), as_version=4)
    assert executed.cells[-1].outputs[0].text == "42\n"
    for job in [with_params, *on_default]:
        assert c.api.store.get(job.job_id).worker_id.startswith(w1.worker_id + "/")
    for job in on_second:
        assert c.api.store.get(job.job_id).worker_id.startswith(w2.worker_id + "/")
    assert all(len(marker_lines(tmp_path / n)) == 1 for n in ("d0", "d1", "s0", "s1"))


def test_a_duplicate_or_redelivered_message_runs_nothing(cluster, tmp_path):
    c = cluster
    marker = tmp_path / "dup"
    job = _submit_marker(c, marker, pause=1)
    # Publish the same claim twice more (a broker redelivery, a reconciler racing the submit)...
    c.api.dispatcher.notify(job)
    c.api.dispatcher.publish([Waiting(job.job_id, job.attempt, job.runtime.runtime_id, 0)])
    ended = c.wait_job(job.job_id, lambda j: j.ended)
    # ...and once more after it ended: a late message finds nothing to claim either.
    c.api.dispatcher.notify(job)
    dropped = f"job {job.job_id} attempt 1: not claimed; message dropped"
    wait_until(lambda: dropped in c.w1.text(), 60, "the worker to drop a copy")
    time.sleep(1.0)  # a window for the late copy to run twice, would it (an absence: no condition to wait on)
    assert ended.status == JobStatus.COMPLETED and ended.attempt == 1
    assert len(marker_lines(marker)) == 1
    assert c.api.store.get(job.job_id).attempt == 1


def test_cancel_reaches_the_worker_and_kills_the_kernel(cluster, golden):
    c = cluster
    job = c.api.service.submit(ALICE, golden("sleeps.ipynb"))
    c.wait_job(job.job_id, lambda j: j.progress_percent >= 33 and c.api.store.processes(j.job_id)[1])
    runner_pid, kernel_pid = c.api.store.processes(job.job_id)
    assert alive(kernel_pid)
    asked = time.monotonic()
    c.api.service.cancel(ALICE, job.job_id)
    ended = c.wait_job(job.job_id, lambda j: j.ended)
    took = time.monotonic() - asked
    assert ended.status == JobStatus.CANCELLED and ended.failure.reason == FailureReason.CANCELLED
    assert took < 30, f"cancel took {took:.1f}s"  # the 1 s grace and slack; uncancelled it would never end
    wait_until(lambda: not alive(kernel_pid) and not alive(runner_pid), 60, "the kernel to be gone")


def test_cancel_while_queued_and_deadline(cluster, golden):
    c = cluster
    unserved = c.api.runtimes.register(OPERATOR, RuntimeFields(name="Nobody serves this", image_id="python3"))
    queued = c.api.service.submit(ALICE, golden("trivial.ipynb"), runtime=_runtime(unserved))
    time.sleep(0.5)
    assert c.api.store.get(queued.job_id).status == JobStatus.SUBMITTED
    assert c.api.service.cancel(ALICE, queued.job_id).status == JobStatus.CANCELLED

    three_seconds = JobInputs(execution_timeout_minutes=0.05)
    slow = c.api.service.submit(ALICE, golden("sleeps.ipynb"), inputs=three_seconds)
    c.wait_job(slow.job_id, lambda j: c.api.store.processes(j.job_id)[1])
    pids = c.api.store.processes(slow.job_id)
    ended = c.wait_job(slow.job_id, lambda j: j.ended)
    assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.TIMEOUT
    wait_until(lambda: not any(alive(p) for p in pids), 60, "no process of the timed-out job")


def test_a_short_visibility_timeout_with_busy_workers_runs_each_job_once(cluster, tmp_path):
    """Redis redelivers a message unacknowledged for ``visibility_timeout``: with a 1 s timeout and
    3 s jobs queued behind two busy single-slot workers, every job still runs exactly once (early
    ack, no prefetch while busy, and the compare-and-set claim for anything sent twice -- on a
    loaded machine the reconciler's 2 s re-publish does send some twice)."""
    c = cluster
    rt = c.api.runtimes.register(OPERATOR, RuntimeFields(name="Short visibility", image_id="python3"))
    short = {"NBJOBS_BROKER_TRANSPORT_OPTIONS": '{"visibility_timeout": 1}'}
    workers = [c.start_worker(f"vis{i}", "--runtime", rt.name, "--concurrency", "1", **short) for i in (1, 2)]
    jobs = [_submit_marker(c, tmp_path / f"vis{i}", pause=3, runtime=rt) for i in range(5)]
    try:
        for job in jobs:
            ended = c.wait_job(job.job_id, lambda j: j.ended, timeout=90)
            assert ended.status == JobStatus.COMPLETED and ended.attempt == 1, ended.failure
        time.sleep(2)  # past another visibility timeout: a late redelivery would show now
        assert [len(marker_lines(tmp_path / f"vis{i}")) for i in range(5)] == [1] * 5
        ran_on = {c.api.store.get(j.job_id).worker_id.rsplit("/", 1)[0] for j in jobs}
        assert ran_on == {c.record(w).worker_id for w in workers}  # both busy workers took part
    finally:
        for w in workers:
            w.proc.send_signal(signal.SIGTERM)
        for w in workers:
            assert w.proc.wait(30) == 0


def test_the_machines_view_lists_live_workers(cluster):
    from starlette.testclient import TestClient

    from nbjobs.web.app import create_app

    c = cluster
    c.api.users.ensure_admin("admin", "admin-password-123")
    with TestClient(create_app(c.api.web)) as http:
        token = http.post(
            f"/{c.api.settings.server.context}/admin/generateToken",
            data={"username": "admin", "password": "admin-password-123", "f": "json"},
        ).json()["token"]
        body = http.get(
            f"/{c.api.settings.server.context}/admin/system/machines", params={"f": "json", "token": token}
        ).json()
    machines = {m["workerId"]: m for m in body["machines"]}
    w2 = machines[c.record(c.w2).worker_id]
    assert w2["runtimes"] == [{"id": c.second.runtime_id, "name": "Second"}]
    assert w2["concurrency"] == 1 and w2["state"] == "online" and w2["lastHeartbeat"] > 0
    assert w2["machineName"] == os.uname().nodename


def test_the_app_workers_page_lists_the_real_workers_with_fresh_heartbeats(cluster):
    import re

    from starlette.testclient import TestClient

    from nbjobs.web.app import create_app

    c = cluster
    c.api.users.ensure_admin("admin", "admin-password-123")
    token = c.api.tokens.issue(c.api.users.get("admin")).token
    with TestClient(create_app(c.api.web)) as http:
        page = http.get(f"/{c.api.settings.server.context}/app/admin/workers",
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert page.status_code == 200 and "Distributed mode" in page.text and "(this server)" not in page.text
    rows = page.text.split("<tr>")[2:]  # after the header row: one per live worker
    for worker in (c.w1, c.w2):
        row = next(r for r in rows if f'<span class="mono">{c.record(worker).worker_id}</span>' in r)
        age = float(re.search(r"([\d.]+) s ago", row).group(1))
        assert age <= 4 and f"pid {worker.pid} " in row and "online" in row  # heartbeat within the 4 s lease
        assert ("Second" in row) == (worker is c.w2)  # the runtimes each serves


def test_kill_9_of_a_worker_fails_its_job_within_the_lease_or_retries_it(cluster, tmp_path):
    c = cluster
    lost = _submit_marker(c, tmp_path / "lost", pause=600)
    retried = _submit_marker(c, tmp_path / "retried", pause=600, retry_on_worker_lost=1)
    for job, name in ((lost, "lost"), (retried, "retried")):
        c.wait_job(job.job_id, lambda j, name=name: marker_lines(tmp_path / name))
    pids = [p for job in (lost, retried) for p in c.api.store.processes(job.job_id) if p]
    assert len(pids) == 4 and all(alive(p) for p in pids)

    killed_at = time.monotonic()
    c.w1.proc.send_signal(signal.SIGKILL)
    c.w1.proc.wait(10)
    wait_until(lambda: not any(alive(p) for p in pids), 60, "runners and kernels to die with their worker")

    ended = c.wait_job(lost.job_id, lambda j: j.ended)
    assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.WORKER_LOST
    # the 4 s lease, plus reaper rounds and slack for a loaded machine: not the default 60 s lease
    assert time.monotonic() - killed_at < 4 + 30

    c.w1 = c.restart(c.w1)  # the retried job runs again on the restarted worker
    again = c.wait_job(retried.job_id, lambda j: j.ended, timeout=60)
    assert again.status == JobStatus.COMPLETED and again.attempt == 2
    assert len(marker_lines(tmp_path / "retried")) == 2  # at-least-once, as that job opted in
    assert len(marker_lines(tmp_path / "lost")) == 1  # at-most-once by default


def test_sigterm_drains_the_worker(cluster, tmp_path):
    c = cluster
    job = _submit_marker(c, tmp_path / "drain", pause=3, runtime=c.second)
    c.wait_job(job.job_id, lambda j: marker_lines(tmp_path / "drain"))
    worker_id = c.record(c.w2).worker_id
    c.w2.proc.send_signal(signal.SIGTERM)
    queued = _submit_marker(c, tmp_path / "after-drain", runtime=c.second)  # must wait, not be lost
    assert c.w2.proc.wait(30) == 0
    assert c.api.store.get(job.job_id).status == JobStatus.COMPLETED
    assert worker_id not in {w.worker_id for w in c.api.workers.live(0)}
    assert c.api.store.get(queued.job_id).status == JobStatus.SUBMITTED
    c.w2 = c.restart(c.w2)
    assert c.wait_job(queued.job_id, lambda j: j.ended).status == JobStatus.COMPLETED


def test_broker_restart_loses_no_job(cluster, tmp_path, golden):
    c = cluster
    if not _may_restart_redis():
        pytest.skip("Redis on 127.0.0.1:6379 is not ours to restart (set NBJOBS_TEST_RESTART_REDIS=1)")
    running = _submit_marker(c, tmp_path / "through-restart", pause=4)
    c.wait_job(running.job_id, lambda j: marker_lines(tmp_path / "through-restart"))
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], check=False, capture_output=True)
    try:
        during = c.api.service.submit(ALICE, golden("trivial.ipynb"))  # publish fails: recorded, reconciled
    finally:
        _start_redis()
    after = c.api.service.submit(ALICE, golden("trivial.ipynb"))
    for job in (running, during, after):
        ended = c.wait_job(job.job_id, lambda j: j.ended, timeout=60)
        assert ended.status == JobStatus.COMPLETED, (job.job_id, ended.failure)
    assert c.api.store.count(statuses=frozenset({JobStatus.SUBMITTED, JobStatus.EXECUTING})) == 0
    assert all(j.status in ENDED for j in c.api.store.list(limit=1000))


def _may_restart_redis() -> bool:
    if os.environ.get("NBJOBS_TEST_RESTART_REDIS") == "1" or os.environ.get("CI", "").lower() == "true":
        return REDIS_URL.startswith("redis://127.0.0.1:6379/")
    return False


def _start_redis() -> None:
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
        check=True,
    )
    ping = ["redis-cli", "ping"]
    wait_until(lambda: subprocess.run(ping, capture_output=True).returncode == 0, 10, "Redis")


def test_a_retried_job_runs_its_next_attempt_on_a_worker_after_its_backoff(cluster, golden, tmp_path):
    """The worker's supervisor puts the failed attempt back to SUBMITTED; nobody publishes it then: the
    API's reconciler sends it once the backoff is over (dispatched before ``not_before``)."""
    from nbjobs.models.jobs import RetryPolicy

    c = cluster
    marker = tmp_path / "flaky"
    params = parse_parameters({"marker": str(marker), "die_first": 1})
    policy = RetryPolicy(max_retries=2, min_interval_seconds=1.0)
    job = c.api.service.submit(ALICE, golden("flaky.ipynb"), parameters=params, retry=policy)
    ended = c.wait_job(job.job_id, lambda j: j.ended, 90)
    assert ended.status == JobStatus.COMPLETED and ended.attempt == 2
    assert marker.read_text().splitlines() == [job.job_id, job.job_id]
    first, second = ended.attempts
    assert first.failure.reason == FailureReason.KERNEL_DIED and first.retried
    assert ended.start_time >= first.end_time + 1000  # the backoff held on the worker side too
    assert second.status == JobStatus.COMPLETED and second.attempt == 2
