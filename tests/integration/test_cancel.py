"""Cancel and deadline through the staged stop: interrupt, grace, SIGTERM, SIGKILL of the whole tree."""

from __future__ import annotations

import time

import psutil
import pytest

from nbjobs.errors import CannotCancel
from nbjobs.models.jobs import FailureReason, JobStatus

from .conftest import ADMIN, wait_for

pytestmark = pytest.mark.kernel


def kernel_pid(app, job_id: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, pid = app.store.processes(job_id)
        if pid:
            return pid
        time.sleep(0.05)
    raise AssertionError("kernel never started")


def wait_gone(pid: int, timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def test_cancel_of_a_submitted_job_ends_it_at_once(make_app, golden):
    app = make_app(workers=0)
    job = app.service.submit(ADMIN, golden("trivial.ipynb"))
    cancelled = app.service.cancel(ADMIN, job.job_id)
    assert cancelled.status == JobStatus.CANCELLED and cancelled.failure.reason == FailureReason.CANCELLED
    assert cancelled.end_time > 0
    assert app.pool.run(burst=True) == []  # nothing left to claim


def test_cancel_of_an_ended_job_is_the_arcgis_error(make_app, golden):
    app = make_app()
    job = app.service.submit(ADMIN, golden("trivial.ipynb"))
    app.pool.run(burst=True)
    with pytest.raises(CannotCancel) as err:
        app.service.cancel(ADMIN, job.job_id)
    assert err.value.message == f"Unable to cancel job :[{job.job_id}]"


def test_cancel_stops_a_cell_stuck_in_sleep_and_keeps_the_output(make_app, golden):
    app = make_app()
    app.pool.start(1)
    job = app.service.submit(ADMIN, golden("sleeps.ipynb"))
    pid = kernel_pid(app, job.job_id)
    wait_for(app, job.job_id, lambda j: j.progress_percent >= 33)
    time.sleep(0.3)
    started = time.monotonic()
    assert app.service.cancel(ADMIN, job.job_id).status == JobStatus.CANCELLING
    assert app.service.cancel(ADMIN, job.job_id).status == JobStatus.CANCELLING  # asking twice is harmless
    ended = wait_for(app, job.job_id, lambda j: j.ended, timeout=30)
    assert ended.status == JobStatus.CANCELLED and ended.failure.reason == FailureReason.CANCELLED
    assert time.monotonic() - started < 5  # the interrupt alone was enough
    assert ended.results["hasOutputNotebook"]
    assert b"sleeping" in app.store.get_blob(job.job_id, "output")
    assert wait_gone(pid)


def test_cancel_kills_a_kernel_that_ignores_sigint(make_app, golden):
    app = make_app()
    app.pool.start(1)
    job = app.service.submit(ADMIN, golden("ignores_sigint.ipynb"))
    pid = kernel_pid(app, job.job_id)
    wait_for(app, job.job_id, lambda j: j.progress_message.startswith("Executing"))
    time.sleep(0.5)
    app.service.cancel(ADMIN, job.job_id)
    ended = wait_for(app, job.job_id, lambda j: j.ended, timeout=30)
    assert ended.status == JobStatus.CANCELLED
    assert wait_gone(pid)
    assert ended.results["hasOutputNotebook"]
    assert b"ignoring SIGINT" in app.store.get_blob(job.job_id, "output")


def test_deadline_kills_a_kernel_that_ignores_sigint(make_app, golden):
    app = make_app(max_execute_notebook_time_minutes=0.03)
    job = app.service.submit(ADMIN, golden("ignores_sigint.ipynb"))
    app.pool.run(burst=True)
    ended = app.store.get(job.job_id)
    assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.TIMEOUT


def test_cancel_kills_a_forked_child_that_ignores_sigterm(make_app, golden, tmp_path):
    app = make_app()
    app.pool.start(1)
    job = app.service.submit(ADMIN, golden("forks_stubborn_child.ipynb"))
    kpid = kernel_pid(app, job.job_id)
    wait_for(app, job.job_id, lambda j: j.progress_percent >= 50)
    children = psutil.Process(kpid).children(recursive=True)
    assert children, "the notebook's child should be running"
    app.service.cancel(ADMIN, job.job_id)
    ended = wait_for(app, job.job_id, lambda j: j.ended, timeout=30)
    assert ended.status == JobStatus.CANCELLED
    for child in children:
        assert wait_gone(child.pid), f"child {child.pid} survived the cancel"
    assert wait_gone(kpid)


def test_cancel_while_many_jobs_wait_only_touches_the_one(make_app, golden):
    app = make_app(workers=0)
    jobs = [app.service.submit(ADMIN, golden("trivial.ipynb")) for _ in range(3)]
    app.service.cancel(ADMIN, jobs[1].job_id)
    app.pool.run(burst=True)
    statuses = [app.store.get(j.job_id).status for j in jobs]
    assert statuses == [JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.COMPLETED]


def test_a_cancel_wakes_the_supervisor_instead_of_waiting_for_its_poll(make_app, golden):
    app = make_app(poll_seconds=30)  # the row poll alone would notice the cancel only after 30 s
    app.pool.start(1)
    job = app.service.submit(ADMIN, golden("sleeps.ipynb"))
    wait_for(app, job.job_id, lambda j: j.progress_percent >= 33)
    started = time.monotonic()
    app.service.cancel(ADMIN, job.job_id)
    assert wait_for(app, job.job_id, lambda j: j.ended, timeout=20).status == JobStatus.CANCELLED
    assert time.monotonic() - started < 10
