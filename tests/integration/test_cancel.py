"""Cancel and deadline through the staged stop: interrupt, grace, SIGTERM, SIGKILL of the whole tree."""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from nbjobs.errors import CannotCancel
from nbjobs.models.jobs import FailureReason, JobStatus
from tests.waiting import GENEROUS, eventually, in_sleep

from .conftest import ADMIN, wait_for

pytestmark = pytest.mark.kernel


def kernel_pid(app, job_id: str) -> int:
    return eventually(lambda: app.store.processes(job_id)[1], what="the kernel to start")


def wait_gone(pid: int, timeout: float = GENEROUS) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def ignores_sigint(pid: int) -> bool:
    """The kernel runs the cell that ignores SIGINT: its SigIgn mask has the bit and it sleeps in the
    cell's loop (an idle ipykernel ignores SIGINT too, but waits in epoll, not in time.sleep)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            ignored = next(line for line in status if line.startswith("SigIgn:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(ignored, 16) & 1 << (signal.SIGINT - 1)) and in_sleep(pid)


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
    # A grace far past the wait below: only the interrupt can end the run in time (no SIGTERM stage).
    app = make_app(cancel_grace_seconds=10 * GENEROUS)
    app.pool.start(1)
    job = app.service.submit(ADMIN, golden("sleeps.ipynb"))
    pid = kernel_pid(app, job.job_id)
    wait_for(app, job.job_id, lambda j: j.progress_percent >= 33)
    eventually(lambda: in_sleep(pid), what="the kernel to be inside time.sleep")
    assert app.service.cancel(ADMIN, job.job_id).status == JobStatus.CANCELLING
    assert app.service.cancel(ADMIN, job.job_id).status == JobStatus.CANCELLING  # asking twice is harmless
    ended = wait_for(app, job.job_id, lambda j: j.ended)
    assert ended.status == JobStatus.CANCELLED and ended.failure.reason == FailureReason.CANCELLED
    assert ended.results["hasOutputNotebook"]
    output = app.store.get_blob(job.job_id, "output")
    assert b"sleeping" in output
    assert b"KeyboardInterrupt" in output  # the interrupt alone was enough: the cell raised, no kill
    assert wait_gone(pid)


def test_cancel_kills_a_kernel_that_ignores_sigint(make_app, golden):
    app = make_app()
    app.pool.start(1)
    job = app.service.submit(ADMIN, golden("ignores_sigint.ipynb"))
    pid = kernel_pid(app, job.job_id)
    wait_for(app, job.job_id, lambda j: j.progress_message.startswith("Executing"))
    eventually(lambda: ignores_sigint(pid), what="the kernel to ignore SIGINT")
    app.service.cancel(ADMIN, job.job_id)
    ended = wait_for(app, job.job_id, lambda j: j.ended)
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
    ended = wait_for(app, job.job_id, lambda j: j.ended)
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
    # The row poll alone would notice the cancel only ~300 s after the claim: far past the wait below,
    # however slow the machine is between the claim and the cancel.
    app = make_app(poll_seconds=300)
    app.pool.start(1)
    job = app.service.submit(ADMIN, golden("sleeps.ipynb"))
    wait_for(app, job.job_id, lambda j: j.progress_percent >= 33)
    app.service.cancel(ADMIN, job.job_id)
    assert wait_for(app, job.job_id, lambda j: j.ended, timeout=GENEROUS).status == JobStatus.CANCELLED
