"""20 jobs in every state, then the server dies (kill -9) or is stopped (SIGTERM), then it restarts.

Every job is accounted for, none stays EXECUTING without a live lease, none runs twice (each run of
marks_run.ipynb appends its job id to a marker file), and no runner or kernel outlives the server.
test_crash.py is the single-job version of the kill -9 case; this one reuses its helpers.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from nbjobs.models.jobs import ENDED, RUNNING, FailureReason, Job, JobInputs, JobStatus
from nbjobs.models.parameters import parse_parameters
from nbjobs.roots.server import Server
from nbjobs.settings import load_settings

from .conftest import ADMIN
from .test_crash import _alive, start_server, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

WORKERS = 2
DRAIN_SECONDS = 8.0


class Mixed:
    """The 20 jobs: 10 ended before the crash, 2 EXECUTING, 8 SUBMITTED behind the 2 busy workers."""

    def __init__(self, client: Server, marker: Path, golden) -> None:
        self.client, self.marker, self.golden = client, marker, golden
        self.ok = [self.submit() for _ in range(4)]
        self.failing = [self.submit(fail=True) for _ in range(3)]
        self.cancelled = [client.service.cancel(ADMIN, self.submit().job_id) for _ in range(3)]
        self.running: list[Job] = []
        self.queued: list[Job] = []

    def submit(self, seconds: float = 0, fail: bool = False, release: Path | None = None) -> Job:
        """marks_run.ipynb: a line in the marker file, then ``seconds`` or until ``release`` exists."""
        params = parse_parameters(
            {"marker": str(self.marker), "seconds": seconds, "fail": fail, "release": str(release or "")}
        )
        return self.client.service.submit(ADMIN, self.golden("marks_run.ipynb"),
                                          inputs=JobInputs(notebook_parameters=params))  # fmt: skip

    @property
    def all(self) -> list[Job]:
        return [*self.ok, *self.failing, *self.cancelled, *self.running, *self.queued]

    def get(self, job: Job) -> Job:
        found = self.client.store.get(job.job_id)
        assert found is not None
        return found

    def runs(self) -> Counter[str]:
        return Counter(self.marker.read_text().split()) if self.marker.exists() else Counter()

    def reach_the_crash_point(self, *releases: Path | None) -> None:
        """Let the first 10 end, start 2 long sleepers (each until its release file, if any, appears),
        then queue 8 more behind them."""
        for job in [*self.ok, *self.failing]:
            wait_until(lambda job=job: self.get(job).ended, 90, "the first jobs to end")
        assert [self.get(j).status for j in self.ok] == [JobStatus.COMPLETED] * 4
        assert all(self.get(j).failure.reason == FailureReason.CELL_ERROR for j in self.failing)
        self.running = [self.submit(1000, release=release) for release in releases]
        # running: the cell has written its line (so the run began) and the kernel is known
        wait_until(lambda: all(self.runs()[j.job_id] == 1 for j in self.running), 60, "the sleepers to run")
        wait_until(lambda: all(self.client.store.processes(j.job_id)[1] for j in self.running), 60, "kernels")
        self.queued = [self.submit() for _ in range(8)]
        assert len(self.all) == 20
        assert [self.get(j).status for j in self.running] == [JobStatus.EXECUTING] * len(releases)
        assert [self.get(j).status for j in self.queued] == [JobStatus.SUBMITTED] * 8

    def before(self) -> dict[str, tuple[JobStatus, int]]:
        return {j.job_id: (self.get(j).status, self.get(j).end_time) for j in self.all}

    def check_after_restart(self, server: subprocess.Popen, ended_before: dict) -> None:
        """Restarted: the queued 8 run once each; watch leases meanwhile; then every job is ended."""
        store = self.client.store
        # the new server recovers what the old one left running before it claims anything
        wait_until(lambda: all(self.get(j).ended for j in self.running), 60, "start-up recovery")
        while True:
            now = int(time.time() * 1000)
            for job in store.list(statuses=RUNNING):  # anything running is this server's, under a live lease
                assert job.lease_expires > now, job
                assert f"/{server.pid}-" in job.worker_id, job.worker_id
            if store.count(statuses=frozenset(ENDED)) == 20:
                break
            assert server.poll() is None
            time.sleep(0.1)
        assert store.count() == 20
        for job in self.all:
            if job.job_id in ended_before and ended_before[job.job_id][0] in ENDED:
                assert (self.get(job).status, self.get(job).end_time) == ended_before[job.job_id]  # untouched
        for job in self.queued:
            assert self.get(job).status == JobStatus.COMPLETED and self.get(job).attempt == 1
        runs = self.runs()
        assert max(runs.values()) == 1, runs  # nothing ran twice
        expected = {j.job_id for j in [*self.ok, *self.failing, *self.running, *self.queued]}
        assert set(runs) == expected  # every job that was claimed ran once; the cancelled never


def server_tree(server: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(server.pid).children(recursive=True)


def stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture
def setting(tmp_path, golden, monkeypatch):
    monkeypatch.setenv("NBJOBS_WARM_POOL_SIZE", "1")
    monkeypatch.setenv("NBJOBS_DRAIN_SECONDS", str(DRAIN_SECONDS))
    monkeypatch.setenv("NBJOBS_CANCEL_GRACE_SECONDS", "1")
    monkeypatch.setenv("NBJOBS_KILL_GRACE_SECONDS", "1")
    data_dir = tmp_path / "data"
    client = Server.from_settings(load_settings({}, data_dir=data_dir, workers=0))  # the test's own view
    client.prepare()
    yield Mixed(client, tmp_path / "runs.txt", golden), data_dir, tmp_path / "server.log"
    client.stop()


def test_kill_9_with_20_jobs_in_mixed_states_then_restart(setting):
    mixed, data_dir, log = setting
    server = start_server(data_dir, log, workers=WORKERS)
    try:
        mixed.reach_the_crash_point(None, None)
        tree = server_tree(server)
        assert len(tree) >= 4  # two runners with their kernels, plus the warm spare
        ended_before = mixed.before()

        server.send_signal(signal.SIGKILL)  # the server process only, not its group
        server.wait(60)
        wait_until(lambda: not any(_alive(p.pid) for p in tree), 60, "runners and kernels to die with it")
        assert [mixed.get(j).status for j in mixed.running] == [JobStatus.EXECUTING] * 2  # as it died

        restarted = time.monotonic()
        server = start_server(data_dir, log, workers=WORKERS)
        mixed.check_after_restart(server, ended_before)
        print(
            f"\nkill -9: {len(tree)} processes of the server gone; restart to all 20 ended "
            f"{time.monotonic() - restarted:.1f}s; runs per job max {max(mixed.runs().values())}"
        )
        for job in mixed.running:  # recovered: ended as lost, not run again
            ended = mixed.get(job)
            assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.WORKER_LOST
            assert ended.attempt == 1
        tree = server_tree(server)
    finally:
        stop(server)
    assert server.returncode == 0
    wait_until(lambda: not any(_alive(p.pid) for p in tree), 60, "no process left after the stop")
    assert "Traceback" not in log.read_text(errors="replace")


def test_sigterm_drains_then_restart_runs_the_queued_jobs(setting):
    mixed, data_dir, log = setting
    server = start_server(data_dir, log, workers=WORKERS)
    try:
        release = data_dir.parent / "release"
        mixed.reach_the_crash_point(release, None)  # one finishes within the drain, one does not
        short, long = mixed.running
        tree = server_tree(server)
        ended_before = mixed.before()

        stopped = time.monotonic()
        server.send_signal(signal.SIGTERM)
        draining = "stopping: running jobs may finish"
        wait_until(lambda: draining in log.read_text(errors="replace"), 60, "the server to begin its drain")
        release.touch()  # the short one ends now, during the drain
        server.wait(DRAIN_SECONDS + 60)
        took = time.monotonic() - stopped
        assert server.returncode == 0  # a graceful exit, not death by signal
        assert DRAIN_SECONDS <= took < DRAIN_SECONDS + 40  # the drain, then the kill: not the 1000 s sleeper
        # ended cleanly within the grace, before the process exited: nothing left for recovery to do
        assert mixed.get(short).status == JobStatus.COMPLETED
        lost = mixed.get(long)
        assert lost.status == JobStatus.FAILED and lost.failure.reason == FailureReason.WORKER_LOST
        assert "stopped before the job finished" in lost.failure.message
        assert mixed.client.store.count(statuses=RUNNING) == 0
        assert [mixed.get(j).status for j in mixed.queued] == [JobStatus.SUBMITTED] * 8
        assert [mixed.get(j).attempt for j in mixed.queued] == [0] * 8
        wait_until(lambda: not any(_alive(p.pid) for p in tree), 60, "runners and kernels stopped with it")
        ended_before = {**ended_before, **mixed.before()}

        restarted = time.monotonic()
        server = start_server(data_dir, log, workers=WORKERS)
        mixed.check_after_restart(server, ended_before)
        print(
            f"\nSIGTERM: exit 0 after {took:.1f}s (drain {DRAIN_SECONDS:g}s); restart to all 20 ended "
            f"{time.monotonic() - restarted:.1f}s; runs per job max {max(mixed.runs().values())}"
        )
        assert mixed.get(long).attempt == 1 and mixed.get(short).attempt == 1
        tree = server_tree(server)
    finally:
        stop(server)
    wait_until(lambda: not any(_alive(p.pid) for p in tree), 60, "no process left after the stop")
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    assert "stopping: running jobs may finish within 8s" in text
