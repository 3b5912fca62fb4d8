"""Hostile notebooks against a real `nbjobs serve` over HTTPS, driven through the HTTP API.

Each case must end FAILED or CANCELLED with the right reason, leave no process behind (the job's
runner, kernel and anything they forked, found by process tree and by session), and leave the server
serving: a trivial job still completes after it. The figures (time to end, processes left, server
RSS and fds) are printed at the end of the module (`pytest -s`).

What a notebook can reach on a server without NBJOBS_KERNEL_USER (its kernel runs as the server's
OS user) is asserted as it is, not as one would wish: it can read the SQLite database, list the data
dir, read the TLS key and read the server's own environment through /proc/<pid>/environ. Only the
kernel's own environment is scrubbed. test_isolation.py shows a kernel user closes the first three.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nbformat
import psutil
import pytest

from nbjobs.settings import load_settings
from nbjobs.store.engine import open_store
from nbjobs.store.jobs import SqlJobStore
from tests.e2e.conftest import NBJOBS, Server, Session, _free_port, sign_in
from tests.waiting import in_sleep

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

ADMIN_PASSWORD = "adversarial-admin-pw-7d1e"
DB_SECRET = "db-secret-3b9a41"  # the password part of a DATABASE_URL-like variable in the server's env
ENDED = {"COMPLETED", "FAILED", "CANCELLED"}
FIGURES: list[dict] = []


@dataclass
class Served:
    server: Server
    proc: subprocess.Popen
    admin: Session
    store: SqlJobStore  # the test's own read-only view of the server's jobs (runner and kernel pids)
    runtimes: dict[str, str] = field(default_factory=dict)  # name -> runtime id


def _start(data_dir: Path) -> tuple[subprocess.Popen, Server]:
    port = _free_port()
    env = {
        **os.environ,
        "NBJOBS_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "BACKUP_DATABASE_URL": f"postgresql://nbjobs:{DB_SECRET}@127.0.0.1:5432/nbjobs",
        "NBJOBS_WARM_POOL_SIZE": "1",
        "NBJOBS_POLL_SECONDS": "0.2",
        "NBJOBS_CANCEL_GRACE_SECONDS": "1",
        "NBJOBS_KILL_GRACE_SECONDS": "1",
        "NBJOBS_DRAIN_SECONDS": "5",
    }
    log = data_dir.parent / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [NBJOBS, "serve", "--port", str(port), "--data-dir", str(data_dir), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    server = Server(f"https://127.0.0.1:{port}/arcgis", data_dir, data_dir / "nbjobs-cert.pem", log)
    deadline = time.monotonic() + 180  # a start takes seconds quiet, far longer on a machine under load
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            with server.client() as c:
                c.get(server.url + "/sharing/rest", params={"f": "json"}).raise_for_status()
            return proc, server
        except (httpx.HTTPError, OSError):
            if time.monotonic() >= deadline:
                proc.kill()  # not left running (and warned about) behind the failed fixture
                proc.wait(30)
                started = log.read_text()
                raise AssertionError(f"nbjobs serve did not answer within 180 s:\n{started}") from None
            time.sleep(0.3)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("adversarial") / "data"
    proc, server = _start(data_dir)
    admin = sign_in(server, "admin", ADMIN_PASSWORD)
    store = open_store(load_settings({}, data_dir=data_dir), migrate=False)
    it = Served(server, proc, admin, store)
    for name, fields in {
        "short": {"maxWallMinutes": 0.05},  # a 3-second deadline
        "small": {"maxMemory": 300, "maxMemoryUnit": "m"},
    }.items():
        answer = admin.post("/admin/notebooks/runtimes/register", name=name, imageId="python3", **fields)
        it.runtimes[name] = answer["notebookRuntime"]["id"]
    try:
        yield it
    finally:
        admin.http.close()
        store.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _print_figures()
    assert "Traceback" not in server.output.read_text(errors="replace")


@dataclass
class Outcome:
    job: dict
    seconds: float  # from submit (or from the cancel) to the job's end as the API reports it
    left: list[psutil.Process]  # the job's processes still alive after it ended
    tree: set[int]  # every process of the job seen while it ran (runner, kernel, their children)
    sessions: set[int]

    @property
    def reason(self) -> str:
        return (self.job.get("failure") or {}).get("reason", "")


def _job_processes(store: SqlJobStore, job_id: str) -> dict[int, float]:
    """The job's runner and kernel and all their descendants, alive now: pid -> create time."""
    seen: dict[int, float] = {}
    for pid in store.processes(job_id):
        if not pid:
            continue
        try:
            root = psutil.Process(pid)
            for proc in (root, *root.children(recursive=True)):
                seen[proc.pid] = proc.create_time()
        except psutil.Error:
            pass
    return seen


def _alive(pid: int, created: float | None = None) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or (created is not None and proc.create_time() != created):
            return None
        return proc
    except psutil.Error:
        return None


def _what_they_wait_on(store: SqlJobStore, job_id: str) -> dict[int, list[str]]:
    """For a job that did not end: each of its processes' threads, as ``name status wchan``."""
    found: dict[int, list[str]] = {}
    for pid in _job_processes(store, job_id):
        with contextlib.suppress(psutil.Error, OSError):
            threads = [psutil.Process(thread.id) for thread in psutil.Process(pid).threads()]
            wchan = {t.pid: Path(f"/proc/{pid}/task/{t.pid}/wchan").read_text() for t in threads}
            found[pid] = [f"{t.name()} {t.status()} {wchan[t.pid]}" for t in threads]
    return found


def _in_sessions(sessions: set[int]) -> list[psutil.Process]:
    """Live processes whose session is one of ``sessions`` (a runner's and a kernel's: each starts one)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) in sessions and _alive(proc.pid):
                found.append(proc)
        except (OSError, psutil.Error):
            pass
    return found


def run_case(it: Served, notebook: str, *, runtime: str = "", params: dict | None = None,
             cancel_when=None, expect: set[str] = ENDED) -> Outcome:  # fmt: skip
    """Submit ``notebook``; optionally cancel once ``cancel_when(job, tree)`` holds; wait for its end;
    then wait (up to 60 s) for every process of the job to be gone and report what is left."""
    admin = it.admin
    item = admin.add_notebook(notebook)
    fields = {"itemId": item, "updatePortalItem": "false"}
    if runtime:
        fields["notebookRuntimeId"] = it.runtimes[runtime]
    if params:
        fields["notebookParameters"] = json.dumps(params)
    started = time.monotonic()
    job_id = admin.post("/admin/notebooks/executeNotebook", **fields)["jobId"]
    tree: dict[int, float] = {}
    cancelled = False
    while True:
        job = admin.get(f"/admin/notebooks/jobs/{job_id}")
        tree.update(_job_processes(it.store, job_id))
        if job["status"] in ENDED:
            break
        if cancel_when is not None and not cancelled and cancel_when(job, tree):
            assert admin.post(f"/admin/notebooks/jobs/{job_id}/cancel") == {"status": "success"}
            cancelled, started = True, time.monotonic()
        if time.monotonic() - started >= 120:
            where = _what_they_wait_on(it.store, job_id)
            admin.post(f"/admin/notebooks/jobs/{job_id}/cancel")  # the next cases must not queue behind it
            progress = job["customAttributes"]
            raise AssertionError(f"job {job_id} not ended after 120 s: {job['status']}, {progress}; "
                                 f"cancelled {cancelled}; its processes: {where}")  # fmt: skip
        time.sleep(0.05)
    seconds = time.monotonic() - started
    assert job["status"] in expect, job
    sessions = {pid for pid in it.store.processes(job_id) if pid}
    end = time.monotonic() + 60
    while True:
        left = [p for pid, created in tree.items() if (p := _alive(pid, created))]
        left += [p for p in _in_sessions(sessions) if p.pid not in tree]
        if not left or time.monotonic() > end:
            break
        time.sleep(0.1)
    assert it.proc.poll() is None, "the server died"
    return Outcome(job, seconds, left, set(tree), sessions)


def printed(it: Served, job_id: str) -> str:
    answer = it.admin.http.get(f"{it.admin.base}/admin/notebooks/jobs/{job_id}/output",
                               params={"token": it.admin.token})  # fmt: skip
    nb = nbformat.reads(answer.text, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def errors(it: Served, job_id: str) -> list[str]:
    """The names of the errors in the output notebook (``KeyboardInterrupt`` for an interrupted cell)."""
    answer = it.admin.http.get(f"{it.admin.base}/admin/notebooks/jobs/{job_id}/output",
                               params={"token": it.admin.token})  # fmt: skip
    nb = nbformat.reads(answer.text, as_version=4)
    return [o.get("ename", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]  # fmt: skip


def still_serving(it: Served) -> float:
    """A trivial job completes after the case; returns how long it took."""
    after = run_case(it, "trivial.ipynb")
    assert after.job["status"] == "COMPLETED", after.job
    assert not after.left
    return after.seconds


def record(case: str, outcome: Outcome, **extra: object) -> None:
    FIGURES.append({"case": case, "status": outcome.job["status"], "reason": outcome.reason,
                    "seconds": round(outcome.seconds, 1), "processes_seen": len(outcome.tree),
                    "left": len(outcome.left), **extra})  # fmt: skip


def _print_figures() -> None:
    print("\nadversarial notebooks against `nbjobs serve` (1 worker, warm pool 1):")
    for row in FIGURES:
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))


def _running_cell(percent: int):
    return lambda job, tree: job["customAttributes"]["executeNotebookProgress"]["percent"] >= percent


# -- the cases ---------------------------------------------------------------------------------------
def test_infinite_loop_with_a_short_deadline_fails_with_timeout(served):
    out = run_case(served, "busy_loop.ipynb", runtime="short")
    assert out.job["status"] == "FAILED" and out.reason == "timeout", out.job
    assert 3 <= out.seconds < 60  # the deadline, not the case's own 120 s bound
    assert out.tree and not out.left
    record("busy loop, 3 s deadline", out, trivial_after=round(still_serving(served), 1))


def test_a_sleep_of_a_million_seconds_is_cancelled(served):
    def sleeping(job, tree) -> bool:  # inside time.sleep: an interrupt sent earlier is ignored by ipykernel
        return _running_cell(33)(job, tree) and in_sleep(served.store.processes(job["jobId"])[1])

    out = run_case(served, "sleeps.ipynb", cancel_when=sleeping)
    assert out.job["status"] == "CANCELLED" and out.reason == "cancelled", out.job
    assert "KeyboardInterrupt" in errors(served, out.job["jobId"])  # the interrupt alone ended time.sleep
    assert out.seconds < 60
    assert "sleeping" in printed(served, out.job["jobId"])
    assert not out.left
    record("time.sleep(10**6) cancelled", out, trivial_after=round(still_serving(served), 1))


def test_a_kernel_ignoring_sigint_is_cancelled_by_the_staged_stop(served):
    def running(job, tree) -> bool:  # cancel once the kernel really ignores SIGINT (its SigIgn mask)...
        kernel = served.store.processes(job["jobId"])[1]
        try:
            with open(f"/proc/{kernel}/status") as status:
                ignored = next(line for line in status if line.startswith("SigIgn:")).split()[1]
        except (OSError, StopIteration):
            return False
        # ...in the cell's loop: an idle ipykernel ignores SIGINT too, but waits in epoll, not time.sleep
        return bool(kernel and int(ignored, 16) & 1 << (signal.SIGINT - 1)) and in_sleep(kernel)

    out = run_case(served, "ignores_sigint.ipynb", cancel_when=running)
    assert out.job["status"] == "CANCELLED" and out.reason == "cancelled", out.job
    assert 1 <= out.seconds < 60  # the interrupt was not enough: SIGTERM after the 1 s grace
    assert "KeyboardInterrupt" not in errors(served, out.job["jobId"])
    assert "ignoring SIGINT" in printed(served, out.job["jobId"])
    assert not out.left
    record("SIGINT ignored, cancelled", out, trivial_after=round(still_serving(served), 1))


def test_a_forked_grandchild_ignoring_sigterm_is_killed(served):
    out = run_case(served, "forks_stubborn_child.ipynb", cancel_when=lambda job, tree: (
        _running_cell(50)(job, tree) and len(tree) >= 3))  # fmt: skip
    assert out.job["status"] == "CANCELLED" and out.reason == "cancelled", out.job
    child = int(printed(served, out.job["jobId"]).split("child", 1)[1].split()[0])
    assert child in out.tree  # seen while it ran...
    assert _alive(child) is None  # ...and gone, with nothing else left in its session
    assert not out.left
    record("forked grandchild ignoring SIGTERM", out, trivial_after=round(still_serving(served), 1))


def test_os_exit_in_a_cell_is_kernel_died(served):
    out = run_case(served, "exits.ipynb")
    assert out.job["status"] == "FAILED" and out.reason == "kernel_died", out.job
    assert "about to exit" in printed(served, out.job["jobId"])
    assert not out.left
    record("os._exit(1)", out, trivial_after=round(still_serving(served), 1))


def test_a_memory_bomb_fails_with_memory_limit(served):
    from nbjobs.execution.limits import detect_backend

    if detect_backend().name == "rlimit":
        pytest.skip("the warm kernel can only be limited through a cgroup (test_limits covers RLIMIT_AS)")
    out = run_case(served, "memory_bomb.ipynb", runtime="small")
    assert out.job["status"] == "FAILED" and out.reason == "memory_limit", out.job
    assert "300 MiB" in out.job["failure"]["message"]
    assert not out.left
    record("memory bomb, 300 MiB runtime", out, trivial_after=round(still_serving(served), 1))


def test_a_500_mb_output_flood_is_capped_without_growing_the_server(served):
    server = psutil.Process(served.proc.pid)
    still_serving(served)  # warm the server's own paths first (a blob read, a kernel start)
    before = server.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak.append(server.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        # 500 lines of 1 MiB: without the linear stream coalescing the runner spent hours on them
        out = run_case(served, "floods_500mb.ipynb")
    finally:
        stop.set()
        sampler.join()
    assert out.job["status"] == "COMPLETED", out.job
    assert out.seconds < 120  # hours without the linear stream coalescing
    results = out.job["results"]
    assert results["outputTruncated"] is True and results["truncatedCells"] == [1]
    text = printed(served, out.job["jobId"])
    assert "flooding\n" in text and "step 1" not in text  # carriage returns still applied
    assert "output truncated" in text and "after flood" in text
    assert len(text) < 6 * 2**20
    grew = (max(peak) - before) / 2**20
    assert grew < 100, f"the server grew by {grew:.0f} MiB"
    assert not out.left
    record("500 MiB output flood", out, server_rss_growth_mib=round(grew, 1),
           output_mib=round(len(text) / 2**20, 1))  # fmt: skip


def test_ten_thousand_open_files_end_and_leak_nothing(served):
    server = psutil.Process(served.proc.pid)
    still_serving(served)
    fds_before = server.num_fds()
    out = run_case(served, "opens_files.ipynb")
    text = printed(served, out.job["jobId"])
    if out.job["status"] == "COMPLETED":  # RLIMIT_NOFILE allowed it
        assert "still holding 10000" in text
        assert int(text.split("open fds", 1)[1].split()[0]) > 10_000
    else:  # or the limit stopped it with a clear cell error
        assert out.reason == "cell_error" and "Too many open files" in out.job["failure"]["evalue"], out.job
    assert not out.left  # the kernel, holder of the 10,000 fds, is gone
    still_serving(served)
    fds_after = server.num_fds()
    assert fds_after <= fds_before + 8, (fds_before, fds_after)  # runner pipes and log files closed
    record("10,000 open files", out, server_fds_before=fds_before, server_fds_after=fds_after)


def test_what_a_notebook_can_reach_of_the_server(served):
    database = served.server.data_dir / "nbjobs.db"
    out = run_case(served, "probes_server.ipynb", params={"database": str(database)})
    assert out.job["status"] == "COMPLETED", out.job
    facts = json.loads(printed(served, out.job["jobId"]).strip().splitlines()[-1])
    # Its own environment is scrubbed: no NBJOBS_* variable, no password, no database URL.
    assert not [n for n in facts["env_names"] if n.startswith("NBJOBS_") and n != "NBJOBS_JOB_ID"]
    assert "BACKUP_DATABASE_URL" not in facts["env_names"]
    assert ADMIN_PASSWORD not in facts["env_values"] and DB_SECRET not in facts["env_values"]
    assert not [n for n in facts["env_names"] if "PASSWORD" in n or "SECRET" in n or "TOKEN" in n]
    # Without NBJOBS_KERNEL_USER the kernel is the server's OS user, and that is what it can reach:
    assert facts["uid"] == os.getuid()
    assert facts["read_database"] == "ok" and facts["database_header"].startswith("SQLite format 3")
    assert facts["list_data_dir"] == "ok" and facts["read_tls_key"] == "ok"
    # ... including the server's environment through /proc (runner first, then the server):
    leaks = {int(pid): found for pid, found in facts["ancestor_environ"].items()}
    assert leaks.get(served.proc.pid) == ["NBJOBS_ADMIN_PASSWORD", "DATABASE_URL"], leaks
    assert not out.left
    record("reads DB and environ", out, reads_db=facts["read_database"],
           reads_server_environ=bool(leaks.get(served.proc.pid)))  # fmt: skip


def test_the_server_is_still_whole(served):
    """After every case: no job of ours still running, no runner or kernel beyond the warm pool."""
    assert still_serving(served) < 30
    running = served.admin.get("/admin/notebooks/jobs")["asyncNotebookJobs"]
    assert not [j for j in running if j["status"] not in ENDED]
    server = psutil.Process(served.proc.pid)
    runners = [c for c in server.children() if "nbjobs.execution.runner" in " ".join(c.cmdline())]
    assert len(runners) <= 2  # the warm spare (and one being replaced), not one per case
