"""Usage statistics over HTTP: per user and runtime in a window, administrators only, bad windows refused."""

from __future__ import annotations

from nbjobs.models.jobs import JobStatus, JobUpdate
from tests.web.conftest import Caller

MOST_RECENT = "/admin/system/statistics/mostRecent"


def _run(nb, job_id: str, start: int, end: int, status: JobStatus, cpu: float = 0.0) -> None:
    """Move a job through a run by hand (the web tests have no workers)."""
    claimed = nb.store.claim(job_id, 1, "host/1-t/0", start, 60_000)
    assert claimed is not None
    results = {"cpuSeconds": cpu} if cpu else {}
    assert nb.store.transition(job_id, status, end, attempt=1, update=JobUpdate(results=results))


def test_jobs_and_time_per_user_and_runtime_in_the_window(
    admin: Caller, alice: Caller, bob: Caller, nb, clock
):
    item_a, item_b = alice.add_notebook(), bob.add_notebook()
    now = clock()
    old = alice.execute(item_a)["jobId"]
    two_hours = 2 * 3_600_000  # the old job ended two hours ago: outside the default window
    _run(nb, old, now - two_hours - 1000, now - two_hours, JobStatus.COMPLETED, cpu=9.0)
    done = alice.execute(item_a)["jobId"]
    _run(nb, done, now - 5000, now - 2000, JobStatus.COMPLETED, cpu=1.25)
    failed = bob.execute(item_b)["jobId"]
    _run(nb, failed, now - 4000, now - 3000, JobStatus.FAILED, cpu=0.5)
    running = bob.execute(item_b)["jobId"]
    assert nb.store.claim(running, 1, "host/1-t/1", now - 10_000, 60_000)
    bob.execute(item_b)  # waiting
    answer = admin.get(MOST_RECENT).json()
    assert answer["windowMinutes"] == 60 and answer["endTime"] == now
    assert answer["startTime"] == now - 3_600_000
    assert answer["total"] == {
        "jobs": 4, "completed": 1, "failed": 1, "cancelled": 0, "running": 1, "waiting": 1,
        "wallSeconds": 3 + 1 + 10, "cpuSeconds": 1.75,
    }  # fmt: skip
    users = {u["username"]: u for u in answer["users"]}
    assert users["alice"]["jobs"] == 1 and users["alice"]["cpuSeconds"] == 1.25
    assert users["bob"]["jobs"] == 3 and users["bob"]["failed"] == 1 and users["bob"]["wallSeconds"] == 11
    [runtime] = answer["runtimes"]
    assert runtime["runtimeName"] == "Python 3 Standard" and runtime["jobs"] == 4
    wide = admin.get(MOST_RECENT, windowMinutes=180).json()
    assert wide["total"]["jobs"] == 5 and wide["total"]["cpuSeconds"] == 10.75


def test_only_administrators_see_usage_and_a_bad_window_is_refused(admin: Caller, alice: Caller):
    denied = alice.get(MOST_RECENT).json()
    assert denied["code"] == 403 and denied["messages"] == [
        "Only administrators can see the usage statistics."
    ]
    for bad in ("0", "-5", "999999999", "soon"):
        answer = admin.get(MOST_RECENT, windowMinutes=bad).json()
        assert answer["status"] == "error" and answer["code"] == 400, (bad, answer)
    assert admin.get("/admin/system/statistics").json()["resources"] == ["mostRecent"]
