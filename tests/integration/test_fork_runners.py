"""Job runners forked from a runner template (issue 15): each still a process of its own per job.

What would fail without the design: a runner that shares state with another (globals, seeds, fds), a
runner that dies with its template (its jobs lost), one that outlives the server, an exit status that
is lost, a hung or dead template that stops jobs from starting, and a setting that cannot turn it off.
The contract tests run the same checks on a spawned runner (``Popen``) and a forked one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from nbjobs.execution.fork import runners as runners_module
from nbjobs.execution.fork.runners import ForkedRunner, RunnerTemplate, spawn_runner
from nbjobs.execution.processes import RunnerProcess
from nbjobs.models.jobs import Job, JobStatus
from nbjobs.roots.server import Server
from tests.waiting import GENEROUS, eventually

from .conftest import ADMIN, wait_for

pytestmark = pytest.mark.kernel


@pytest.fixture
def template(tmp_path: Path) -> Iterator[RunnerTemplate]:
    runner_template = RunnerTemplate(tmp_path / "logs", dict(os.environ))
    runner_template.start()
    eventually(lambda: runner_template.template is not None, timeout=GENEROUS, what="the runner template")
    yield runner_template
    runner_template.close()


def runner_env() -> dict[str, str]:
    return dict(os.environ, NBJOBS_SUPERVISOR_PID=str(os.getpid()))


Launch = Callable[[Path], RunnerProcess]


@pytest.fixture(params=["spawn", "fork"])
def launch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Launch]:
    """Start a runner with no kernel (it waits for its request), the stock way or forked."""
    started: list[RunnerProcess] = []
    if request.param == "spawn":

        def start(cwd: Path) -> RunnerProcess:
            started.append(spawn_runner([], runner_env(), cwd))
            return started[-1]

        yield start
    else:
        runner_template = RunnerTemplate(tmp_path / "logs", dict(os.environ))
        runner_template.start()
        eventually(lambda: runner_template.template is not None, timeout=GENEROUS, what="the runner template")

        def fork(cwd: Path) -> RunnerProcess:
            proc = runner_template.launch([], runner_env(), cwd)
            assert isinstance(proc, ForkedRunner), runner_template.reason
            started.append(proc)
            return proc

        yield fork
        runner_template.close()
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(GENEROUS)
        close_pipes(proc)


def finish(proc: RunnerProcess) -> None:
    proc.kill()
    proc.wait(GENEROUS)
    close_pipes(proc)


def close_pipes(proc: RunnerProcess) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None and not pipe.closed:
            pipe.close()


# -- the contract both kinds of runner keep ------------------------------------------------------------
def test_a_runner_retired_by_eof_exits_0_and_its_pipes_close(launch: Launch, tmp_path: Path) -> None:
    proc = launch(tmp_path)
    assert proc.poll() is None
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    assert proc.wait(GENEROUS) == 0
    assert proc.returncode == 0
    assert proc.stdout.read() == b""  # EOF: nothing else holds the write end


def test_a_runner_killed_reports_the_signal_as_popen_does(launch: Launch, tmp_path: Path) -> None:
    proc = launch(tmp_path)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(GENEROUS) == -signal.SIGKILL
    assert proc.poll() == -signal.SIGKILL


def test_a_runner_leads_its_own_session_in_its_directory(launch: Launch, tmp_path: Path) -> None:
    proc = launch(tmp_path)
    eventually(lambda: (tmp_path / f"runner-{proc.pid}.log").exists(), what="the runner's log")
    assert os.getsid(proc.pid) == proc.pid  # cancel kills the group by the runner's pid
    assert os.getpgid(proc.pid) == proc.pid
    assert psutil.Process(proc.pid).cwd() == str(tmp_path)


def test_a_runner_holds_no_fd_but_its_pipes_and_log(launch: Launch, tmp_path: Path) -> None:
    first, second = launch(tmp_path), launch(tmp_path)
    for proc in (first, second):
        eventually(lambda p=proc: (tmp_path / f"runner-{p.pid}.log").exists(), what="the runner's log")
    # the log is the runner's last fd opened before it waits on its stdin
    fds = f"/proc/{second.pid}/fd"
    targets = sorted(os.readlink(f"{fds}/{fd}") for fd in os.listdir(fds))
    pipes = [t for t in targets if t.startswith("pipe:")]
    files = [t for t in targets if t.startswith("/") and not t.startswith("/dev/")]
    sockets = [t for t in targets if t.startswith("socket:")]
    # stdin and the private copy of stdout (events); the pidfd of the supervisor watch is anon_inode
    assert len(pipes) == 2, targets
    assert files == [str(tmp_path / f"runner-{second.pid}.log")] * 2, targets  # fds 1 and 2
    assert sockets == [], targets  # no template socket, no other runner's connection


# -- forked runners ---------------------------------------------------------------------------------
def test_a_runner_outlives_its_template_and_still_reports_its_end(
    template: RunnerTemplate, tmp_path: Path
) -> None:
    proc = template.launch([], runner_env(), tmp_path)
    assert isinstance(proc, ForkedRunner)
    first = template.template
    assert first is not None
    os.kill(first.pid, signal.SIGKILL)
    eventually(lambda: not first.alive(), what="the template's death")
    assert proc.poll() is None  # no parent-death signal from the template
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(GENEROUS) == -1  # ended; its status died with the template
    close_pipes(proc)
    # the next runner is spawned while a new template starts, then forked again
    later = template.launch([], runner_env(), tmp_path)
    assert not isinstance(later, ForkedRunner)
    assert "died" in template.reason
    finish(later)
    eventually(lambda: template.template is not None and template.template.pid != first.pid, what="a new one")
    again = template.launch([], runner_env(), tmp_path)
    assert isinstance(again, ForkedRunner)
    finish(again)


def test_a_hung_template_is_replaced_and_the_runner_spawned(
    template: RunnerTemplate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runners_module, "FORK_TIMEOUT", 0.5)
    hung = template.template
    assert hung is not None
    os.kill(hung.pid, signal.SIGSTOP)
    try:
        proc = template.launch([], runner_env(), tmp_path)
        assert not isinstance(proc, ForkedRunner)
        assert "did not answer" in template.reason
        finish(proc)
        eventually(lambda: not hung.alive(), what="the hung template killed")
    finally:
        if hung.alive():
            os.kill(hung.pid, signal.SIGCONT)
    eventually(lambda: template.template is not None, timeout=GENEROUS, what="a new template")


def test_a_forked_runner_dies_with_the_process_that_asked_for_it(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    template_pid, runner_pid = (int(x) for x in owner.stdout.readline().split())
    assert psutil.Process(runner_pid).ppid() == template_pid  # forked, not the owner's child
    owner.kill()
    owner.wait()
    owner.stdout.close()
    both_gone = lambda: _gone(runner_pid) and _gone(template_pid)  # noqa: E731
    eventually(both_gone, timeout=GENEROUS, what="runner and template gone")


_OWNER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from nbjobs.execution.fork.runners import RunnerTemplate, ForkedRunner
    cwd = Path(sys.argv[1])
    template = RunnerTemplate(cwd / "logs", dict(os.environ))
    template.start()
    while template.template is None:
        time.sleep(0.01)
    proc = template.launch([], dict(os.environ, NBJOBS_SUPERVISOR_PID=str(os.getpid())), cwd)
    assert isinstance(proc, ForkedRunner)
    print(template.template.pid, proc.pid, flush=True)
    time.sleep(3600)
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- in the job path ------------------------------------------------------------------------------------
def notebook(*sources: str) -> bytes:
    nb = new_notebook(cells=[new_code_cell(textwrap.dedent(s)) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(nb).encode()


def run(app: Server, *sources: str) -> Job:
    job = app.service.submit(ADMIN, notebook(*sources))
    return wait_for(app, job.job_id, lambda j: j.ended, timeout=GENEROUS * 2)


def test_jobs_run_in_forked_runners_and_say_so(make_app: Callable[..., Server]) -> None:
    app = make_app(workers=1, warm_pool_size=1)
    app.pool.start(1)
    assert app.supervisor is not None and app.supervisor.runner_template is not None
    runner_template = app.supervisor.runner_template
    eventually(lambda: runner_template.template is not None, timeout=GENEROUS, what="the runner template")
    app.supervisor.fill()  # a pool runner started before the template was up is replaced as it is used
    seen = set()
    for _ in range(3):
        job = run(app, "import os; print(os.getppid())")
        assert job.status == JobStatus.COMPLETED, job.failure
        if job.results.get("runnerStartMethod") == "fork":
            seen.add(job.job_id)
    assert seen, "no job ran in a forked runner"
    assert runner_template.forked >= 1


def test_fork_runners_off_spawns_every_runner(make_app: Callable[..., Server]) -> None:
    app = make_app(workers=1, warm_pool_size=0, fork_runners=False)
    app.pool.start(1)
    assert app.supervisor is not None and app.supervisor.runner_template is None
    job = run(app, "print(1)")
    assert job.status == JobStatus.COMPLETED, job.failure
    assert job.results["runnerStartMethod"] == "spawn"
