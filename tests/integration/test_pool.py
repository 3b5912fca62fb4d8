"""The warm pool: kernels started ahead, each used by one job only, replaced when they die or age."""

from __future__ import annotations

import json
import time

import nbformat
import psutil
import pytest

from nbjobs.execution.warm_pool import WarmPool
from nbjobs.models.jobs import JobStatus
from tests.waiting import eventually

from .conftest import ADMIN, wait_for

pytestmark = pytest.mark.kernel


def wait_warm(pool: WarmPool, count: int, timeout: float = 60) -> list[int]:
    """Wait until ``count`` pool runners have their kernel ready; return the kernel pids."""
    end = time.monotonic() + timeout
    while pool.warm_count() < count:
        assert time.monotonic() < end, f"pool never had {count} warm runners"
        time.sleep(0.05)
    return [r.kernel[0] for r in pool.waiting() if r.kernel[0]]


def seen_by(app, job_id: str) -> dict:
    nb = nbformat.reads(app.store.get_blob(job_id, "output").decode(), as_version=4)
    return json.loads(nb.cells[0].outputs[0].text)


def test_no_state_leaks_from_one_job_to_the_next(make_app, golden):
    app = make_app(warm_pool_size=2)
    app.pool.start(1)
    pool = app.pool.supervisor.pool
    first_kernels = set(wait_warm(pool, 2))
    one = app.service.submit(ADMIN, golden("leaves_state.ipynb"))
    assert wait_for(app, one.job_id, lambda j: j.ended).status == JobStatus.COMPLETED
    two = app.service.submit(ADMIN, golden("leaves_state.ipynb"))
    assert wait_for(app, two.job_id, lambda j: j.ended).status == JobStatus.COMPLETED
    first, second = seen_by(app, one.job_id), seen_by(app, two.job_id)
    for seen, job in ((first, one), (second, two)):
        assert seen["variable"] is False and seen["module_attr"] is False and seen["env"] is None
        assert seen["cwd"].endswith(f"{job.job_id}-1/work")  # the job's own directory, not the pool's
        assert seen["job_id_env"] == job.job_id  # per-job environment applied before the first cell
    assert first["cwd"] != second["cwd"]
    # both jobs ran in kernels the pool had started ahead, and those kernels go with their jobs (a
    # kernel is stopped just after its job's end is written: on a busy machine, a moment later)
    eventually(lambda: all(gone(pid) for pid in first_kernels), what="both jobs' kernels to exit")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_kernel_that_dies_in_the_pool_is_replaced_and_never_used(make_app, golden):
    app = make_app(warm_pool_size=1)
    pool = app.pool.supervisor.pool
    pool.fill()
    [kernel] = wait_warm(pool, 1)
    [doomed] = pool.waiting()
    psutil.Process(kernel).kill()
    doomed.proc.wait(timeout=60)  # the runner notices within a second and exits
    job = app.service.submit(ADMIN, golden("trivial.ipynb"))
    app.pool.run(burst=True)  # fill() replaces the dead runner before the claim
    assert app.store.get(job.job_id).status == JobStatus.COMPLETED


def test_pool_size_zero_starts_cold_and_still_completes(make_app, golden):
    app = make_app(warm_pool_size=0)
    app.pool.start(1)
    assert app.pool.supervisor.pool.idle() == 0
    job = app.service.submit(ADMIN, golden("trivial.ipynb"))
    assert wait_for(app, job.job_id, lambda j: j.ended).status == JobStatus.COMPLETED
    assert app.pool.supervisor.pool.idle() == 0


def test_idle_runners_older_than_the_ttl_are_recycled(make_app):
    app = make_app(warm_pool_size=1, warm_pool_ttl_seconds=0.5)
    pool = app.pool.supervisor.pool
    pool.fill()
    [old] = pool.waiting()
    time.sleep(0.6)  # the runner's age is the input here: past the 0.5 s TTL
    pool.fill()
    [new] = pool.waiting()
    assert new.proc.pid != old.proc.pid
    assert old.proc.poll() is not None  # retired, with its kernel


def test_a_notebook_for_another_kernel_gets_a_cold_kernel_of_its_own(make_app, golden):
    app = make_app(warm_pool_size=1)
    job = app.service.submit(ADMIN, golden("unknown_kernel.ipynb"))
    app.pool.run(burst=True)
    ended = app.store.get(job.job_id)
    assert ended.status == JobStatus.FAILED and ended.failure.reason == "kernel_not_found"


def test_the_pool_never_grows_past_its_size(make_app, golden):
    app = make_app(warm_pool_size=2)
    pool = app.pool.supervisor.pool
    for _ in range(3):
        pool.fill()
    assert pool.idle() == 2
