"""Jobs whose kernels are forked from their runtime's template (issue 15): as isolated as a new process.

Each test would fail with a shared kernel, a naive fork, or a fork mode that could not be turned off
or repaired: state, random numbers, file descriptors and processes of one job never reach another;
a broken preload, a killed template and a burst of jobs end every job (the ones that cannot be forked
are spawned, and say so in their results).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import textwrap
import time

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from nbjobs.models.jobs import Job, JobInputs, JobStatus
from nbjobs.models.runtimes import DEFAULT_RUNTIME
from nbjobs.roots.server import Server
from nbjobs.service.authz import OPERATOR
from nbjobs.service.runtimes.fields import RuntimeFields
from tests.waiting import GENEROUS, eventually

from .conftest import ADMIN, wait_for

pytestmark = pytest.mark.kernel

MARKER = "nbjobs_fork_jobs_marker"
THREADED = "nbjobs_fork_jobs_threaded"


@pytest.fixture
def app(make_app, tmp_path, monkeypatch) -> Server:
    """A server whose default runtime forks its kernels; a preloadable module and a bad one on the path."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"{MARKER}.py").write_text("LOADED_IN = __import__('os').getpid()\n")
    (modules / f"{THREADED}.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), name='preload-poller', daemon=True).start()\n"
    )
    path = os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PYTHONPATH", path)
    server = make_app(workers=2, warm_pool_size=1)
    server.pool.start(2)
    return server


def notebook(*sources: str) -> bytes:
    nb = new_notebook(cells=[new_code_cell(textwrap.dedent(s)) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(nb).encode()


def run(app: Server, source: str, **inputs: object) -> tuple[Job, list[str]]:
    """Submit a one-cell job, wait for its end; the job and what each cell printed."""
    job = app.service.submit(ADMIN, notebook(source), inputs=JobInputs(**inputs) if inputs else None)
    ended = wait_for(app, job.job_id, lambda j: j.ended, timeout=GENEROUS * 2)
    return ended, printed(app, ended)


def printed(app: Server, job: Job) -> list[str]:
    blob = app.store.get_blob(job.job_id, "output")
    if blob is None:
        return []
    nb = nbformat.reads(blob.decode(), as_version=4)
    return ["".join(o.get("text", "") for o in c.get("outputs", [])).strip() for c in nb.cells]


def set_runtime(app: Server, **fields: object) -> None:
    app.runtimes.update(OPERATOR, DEFAULT_RUNTIME.runtime_id, RuntimeFields(**fields))  # type: ignore[arg-type]


def templates(app: Server) -> list[int]:
    assert app.supervisor is not None
    return [t.pid for t in app.supervisor.templates.running()]


def status_of(app: Server) -> tuple[str, str]:
    status = app.runtimes.get(DEFAULT_RUNTIME.runtime_id).start_status
    return (status.state, status.reason) if status is not None else ("", "")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


WHO_AM_I = """
import os, sys, json, random, uuid, threading
fds = {}
for fd in os.listdir('/proc/self/fd'):
    try:
        fds[fd] = os.readlink(f'/proc/self/fd/{fd}')
    except OSError:
        pass
numpy = sys.modules.get('numpy')
print(json.dumps({
    'pid': os.getpid(), 'ppid': os.getppid(),
    'random': random.random(), 'uuid1_clock_seq': uuid.uuid1().clock_seq, 'uuid4': str(uuid.uuid4()),
    'numpy': numpy.random.random() if numpy else None,
    'threads': sorted(t.name for t in threading.enumerate()),
    'fds': sorted(fds.values()),
    'leaked': 'leaked_global' in globals(), 'injected': 'nbjobs_injected' in sys.modules,
    'json_attr': hasattr(json, 'nbjobs_mark'), 'marker': 'MARKER' in sys.modules,
}))
leaked_global = 1
import types
sys.modules['nbjobs_injected'] = types.ModuleType('nbjobs_injected')
json.nbjobs_mark = True
""".replace("MARKER", MARKER)


def test_a_job_runs_in_a_kernel_forked_from_its_runtime_template(app):
    job, out = run(app, WHO_AM_I)
    assert job.status == JobStatus.COMPLETED, job.failure
    seen = json.loads(out[0])
    assert job.results["kernelStartMethod"] == "fork" and "warnings" not in job.results
    assert seen["ppid"] in templates(app)  # a child of the template, not a process the runner spawned
    assert status_of(app) == ("fork", "")
    eventually(lambda: gone(seen["pid"]), what="the job's kernel to exit with its job")


def test_nothing_of_one_forked_job_reaches_the_next(app):
    first_job, first = run(app, WHO_AM_I)
    second_job, second = run(app, WHO_AM_I)
    assert first_job.results["kernelStartMethod"] == second_job.results["kernelStartMethod"] == "fork"
    one, two = json.loads(first[0]), json.loads(second[0])
    # the first job set a global, injected a module and patched one: the second sees none of it
    assert not (two["leaked"] or two["injected"] or two["json_attr"])
    for key in ("random", "uuid1_clock_seq", "uuid4"):  # every random source reseeded in each child
        assert one[key] != two[key], key


def test_a_forked_job_holds_no_fd_of_the_template_or_of_another_job(app):
    # a job that stays running while a second one looks at its own fds
    slow = app.service.submit(ADMIN, notebook("import time; time.sleep(600)"))
    kernel = wait_for(app, slow.job_id, lambda j: app.store.processes(j.job_id)[1] > 0).job_id
    slow_kernel = app.store.processes(kernel)[1]
    job, out = run(app, WHO_AM_I)
    seen = json.loads(out[0])
    app.service.cancel(ADMIN, slow.job_id)

    def targets(pid: int) -> set[str]:
        found = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        return found

    def identities(found: set[str]) -> set[str]:
        # pipes, sockets and files are named by inode (unique); anonymous inodes (eventfd, epoll) all
        # share one name, so they say nothing about sharing
        return {t for t in found if not t.startswith("anon_inode:") and t != os.devnull}

    template = templates(app)[0]
    ours = identities(set(seen["fds"]))
    theirs = identities(targets(template))
    assert any(t.startswith("socket:") for t in theirs) and any(t.startswith("pipe:") for t in theirs)
    assert not ours & theirs, ours & theirs  # the template's pipes, socket and log are not the job's
    other = identities(targets(slow_kernel))
    log_files = {t for t in ours & other if t.endswith(".log")}
    assert not (ours & other) - log_files, ours & other  # nor another job's sockets or pipes
    assert not log_files  # each runner has its own log
    assert wait_for(app, slow.job_id, lambda j: j.ended).status == JobStatus.CANCELLED


def test_start_method_spawn_is_honoured_and_a_forked_kernel_has_a_spawned_ones_threads(app):
    forked_job, forked = run(app, WHO_AM_I)
    set_runtime(app, start_method="spawn")
    eventually(lambda: run(app, "pass")[0].results.get("kernelStartMethod") == "spawn",
               what="the pool to follow the runtime's startMethod")  # fmt: skip
    spawned_job, spawned = run(app, WHO_AM_I)
    assert spawned_job.results["kernelStartMethod"] == "spawn" and "warnings" not in spawned_job.results
    assert status_of(app) == ("spawn", "")
    one, two = json.loads(forked[0]), json.loads(spawned[0])
    assert one["threads"] == two["threads"]  # the kernel's own threads, and no other
    assert two["ppid"] not in templates(app)
    set_runtime(app, start_method="fork")
    eventually(lambda: run(app, "pass")[0].results.get("kernelStartMethod") == "fork",
               what="the pool to fork again")  # fmt: skip


def test_an_edited_preload_rebuilds_the_template_and_reaches_the_next_jobs(app):
    run(app, "pass")
    before = templates(app)
    set_runtime(app, preload=("json", MARKER))

    def preloaded() -> bool:
        job, out = run(app, WHO_AM_I)
        return job.results.get("kernelStartMethod") == "fork" and json.loads(out[0])["marker"]

    eventually(preloaded, what="a job whose kernel has the new preload imported before its first cell")
    assert status_of(app) == ("fork", "")  # the edit cleared the runtime's status; the new template set it
    assert templates(app) and not set(templates(app)) & set(before)  # a new template, the old one stopped
    eventually(lambda: all(gone(pid) for pid in before), what="the old template to exit")


@pytest.mark.parametrize(
    ("module", "why"),
    [("nbjobs_no_such_module", "failed to import"), (THREADED, "starts a thread at import")],
)
def test_a_preload_that_cannot_be_forked_falls_back_to_spawn_and_says_why(app, module, why):
    set_runtime(app, preload=(module,))

    def fell_back() -> bool:
        job, _ = run(app, "print('ran')")
        return job.status == JobStatus.COMPLETED and job.results.get("kernelStartMethod") == "spawn"

    eventually(fell_back, what="jobs to be spawned once the template refuses")
    job, out = run(app, "print('ran')")
    assert job.status == JobStatus.COMPLETED and out == ["ran"]
    assert any(module in w and why in w for w in job.results["warnings"]), job.results
    state, reason = status_of(app)
    assert state == "fallback" and module in reason and why in reason


def test_a_template_killed_while_jobs_start_is_replaced_and_every_job_ends(app):
    run(app, "pass")
    (first,) = templates(app)
    jobs = [app.service.submit(ADMIN, notebook("print('ok')")) for _ in range(6)]
    os.kill(first, signal.SIGKILL)
    ended = [wait_for(app, j.job_id, lambda j: j.ended, timeout=GENEROUS * 2) for j in jobs]
    assert [j.status for j in ended] == [JobStatus.COMPLETED] * 6
    for job in ended:  # forked (before the kill, or from the new template) or spawned, and said so
        method = job.results["kernelStartMethod"]
        assert method == "fork" or any("not forked" in w for w in job.results.get("warnings", []))

    def forked_again() -> bool:
        return run(app, "pass")[0].results["kernelStartMethod"] == "fork" and first not in templates(app)

    eventually(forked_again, what="a new template to fork the next jobs")


def test_cancel_and_timeout_stop_a_forked_kernel_and_its_children(app):
    job = app.service.submit(
        ADMIN,
        notebook(
            "import subprocess, os\n"
            "child = subprocess.Popen(['sleep', '600'])\n"
            "escaped = subprocess.Popen(['sleep', '601'], start_new_session=True)\n"
            "open('pids.tmp', 'w').write(f'{os.getpid()} {child.pid} {escaped.pid}')\n"
            "os.replace('pids.tmp', 'pids')\n"
            "import time; time.sleep(600)"
        ),
    )
    pids_file = app.settings.store.data_dir / "jobs" / f"{job.job_id}-1" / "work" / "pids"
    eventually(pids_file.exists, what="the job to start its children")
    family = [int(p) for p in pids_file.read_text().split()]
    assert family[0] == app.store.processes(job.job_id)[1]  # the kernel, as the store knows it
    app.service.cancel(ADMIN, job.job_id)
    assert wait_for(app, job.job_id, lambda j: j.ended, timeout=GENEROUS).status == JobStatus.CANCELLED
    eventually(lambda: all(gone(pid) for pid in family), what="the kernel and its children to be killed")

    stubborn = app.service.submit(
        ADMIN,
        notebook(
            "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: time.sleep(0.1)"
        ),
        inputs=JobInputs(execution_timeout_minutes=0.05),
    )
    wait_for(app, stubborn.job_id, lambda j: app.store.processes(j.job_id)[1] > 0)
    kernel = app.store.processes(stubborn.job_id)[1]
    timed_out = wait_for(app, stubborn.job_id, lambda j: j.ended, timeout=GENEROUS)
    assert timed_out.status == JobStatus.FAILED and timed_out.failure is not None
    assert timed_out.failure.reason == "timeout"
    eventually(lambda: gone(kernel), what="the kernel that ignored SIGINT to be killed")


def test_a_job_that_starts_children_and_returns_leaves_nothing_behind(app):
    job, out = run(
        app,
        "import subprocess, os\n"
        "a = subprocess.Popen(['sleep', '600'])\n"
        "b = subprocess.Popen(['sleep', '602'], start_new_session=True)\n"
        "print(os.getpid(), a.pid, b.pid)",
    )
    assert job.status == JobStatus.COMPLETED and job.results["kernelStartMethod"] == "fork"
    pids = [int(p) for p in out[0].split()]
    eventually(lambda: all(gone(pid) for pid in pids), what="the kernel and everything it started to exit")


def test_two_hundred_jobs_submitted_at_once_all_complete_forked(app):
    jobs = [app.service.submit(ADMIN, notebook("x = 6 * 7")) for _ in range(200)]
    deadline = time.monotonic() + 600
    ended: list[Job] = []
    for job in jobs:
        left = max(deadline - time.monotonic(), 1)
        ended.append(wait_for(app, job.job_id, lambda j: j.ended, timeout=left))
    assert [j.status for j in ended].count(JobStatus.COMPLETED) == 200
    methods = [j.results.get("kernelStartMethod") for j in ended]
    spawned = [j.results.get("warnings") for j in ended if j.results.get("kernelStartMethod") != "fork"]
    assert methods.count("fork") == 200, spawned
    assert len(templates(app)) == 1
