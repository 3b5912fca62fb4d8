"""Fork-started kernels vs stock ones, side by side in one run (issue 15's goals table).

    .venv/bin/python bench/fork.py [--runs 20] [--burst 150] [--arrival-seconds 60]

Paths, on the same notebooks (trivial, 20 cells, one importing pandas): nbclient with a cold kernel
and papermill's Python API (both in this process), papermill's CLI (a new process per run), and a
real `nbjobs serve` over HTTPS with the stock start (NBJOBS_FORK_KERNELS=0 NBJOBS_FORK_RUNNERS=0: a new
interpreter for each runner and each kernel) and with fork mode (runners forked from the runner
template, kernels from the runtime's template, the default runtime preloading pandas and numpy). Each
nbjobs figure is submit → COMPLETED seen by a GET.

Figures:
- low load: p50/p95 of one job at a time, "warm" (the pool refilled between jobs) and "cold" (pool 0);
- capacity: N trivial jobs submitted at once, jobs/s first submit → last end, with 2 worker slots;
  beside it, how many stock kernels this machine starts and stops per second (jupyter_client, 2 at once);
- sustained: Poisson arrivals at 80 % of the measured capacity for a while: p50/p95;
- CPU-s per job: CPU of the whole server tree (server, runners, templates, kernels; everything waited
  for, read from this process's children's rusage) over a burst, divided by its jobs;
- memory: USS and PSS of an idle ready kernel (and of its runner) in the warm pool, forked vs stock.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import nbformat
import psutil
from common import BIN, PASSWORD, Server, _notebook, summary, trivial_notebook, twenty_cell_notebook
from nbformat.v4 import new_code_cell

DEFAULT_RUNTIME = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
PRELOAD = "pandas,numpy"


def pandas_notebook() -> nbformat.NotebookNode:
    return _notebook(
        [
            new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
            new_code_cell("import pandas as pd\ndf = pd.DataFrame({'a': range(100)})\nprint(df.a.sum() + x)"),
        ]
    )


NOTEBOOKS: dict[str, Callable[[], nbformat.NotebookNode]] = {
    "trivial": trivial_notebook,
    "20-cell": twenty_cell_notebook,
    "pandas": pandas_notebook,
}


def children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.count = 0

    def server(self, *, fork: bool, pool: int, workers: int = 2, preload: str = PRELOAD) -> Server:
        self.count += 1
        data_dir = self.tmp / f"server-{self.count}"
        data_dir.mkdir()
        mode = "1" if fork else "0"
        server = Server.start(
            data_dir, workers=workers, pool=pool, NBJOBS_FORK_KERNELS=mode, NBJOBS_FORK_RUNNERS=mode
        )
        if fork and preload:  # what the pandas notebook imports (changing a runtime is for administrators)
            admin = server.http.post(
                server.url + "/sharing/rest/generateToken",
                data={"username": "admin", "password": PASSWORD, "client": "referer",
                      "referer": "https://localhost", "f": "json"},
            ).json()["token"]  # fmt: skip
            answer = server.http.post(
                server.url + f"/admin/notebooks/runtimes/{DEFAULT_RUNTIME}/update",
                data={"f": "json", "token": admin, "preload": preload, "startMethod": "fork"},
            ).json()
            assert answer.get("status") == "success", answer
        return server

    def latencies(self, *, fork: bool, pool: int, runs: int) -> dict[str, list[float]]:
        server = self.server(fork=fork, pool=pool, workers=1)
        try:
            times: dict[str, list[float]] = {}
            for label, make in NOTEBOOKS.items():
                item = server.add_notebook(make(), label)
                server.run_job(item)  # first job: caches, the template's start
                times[label] = []
                for _ in range(runs):
                    if pool:
                        wait_warm(server, pool)
                    times[label].append(server.run_job(item))
            return times
        finally:
            server.stop()

    def burst(self, *, fork: bool, jobs: int) -> tuple[float, float, dict[str, float]]:
        """(jobs/s, CPU-s per job, idle kernel memory) for ``jobs`` trivial jobs submitted at once."""
        server = self.server(fork=fork, pool=2, preload="")  # a trivial notebook: nothing to preload
        try:
            item = server.add_notebook(trivial_notebook(), "burst")
            server.run_job(item)
            wait_warm(server, 2)
            memory = kernel_memory(server)
            ids = []
            cpu_before = tree_cpu(server.proc.pid)
            start = time.perf_counter()
            for _ in range(jobs):
                answer = server.post(
                    "/admin/notebooks/executeNotebook", itemId=item, updatePortalItem="false"
                )
                ids.append(answer["jobId"])
            for job_id in ids:
                wait_completed(server, job_id)
            took = time.perf_counter() - start
            cpu = tree_cpu(server.proc.pid) - cpu_before
            return jobs / took, cpu / jobs, memory
        finally:
            server.stop()

    def sustained(self, *, fork: bool, rate: float, seconds: float) -> tuple[list[float], list[str]]:
        """Latencies of trivial jobs arriving as a Poisson process of ``rate`` per second, and the
        timelines of the three slowest (what the server recorded of them)."""
        server = self.server(fork=fork, pool=2, preload="")
        try:
            item = server.add_notebook(trivial_notebook(), "sustained")
            server.run_job(item)
            wait_warm(server, 2)
            runs: list[tuple[float, float, str]] = []  # (latency s, submitted at epoch s, job id)
            threads = []
            end = time.monotonic() + seconds
            rng = random.Random(15)
            while time.monotonic() < end:
                thread = threading.Thread(target=lambda: runs.append(run_job_fresh_client(server, item)))
                thread.start()
                threads.append(thread)
                time.sleep(rng.expovariate(rate))
            for thread in threads:
                thread.join()
            slowest = sorted(runs, reverse=True)[:3]
            return [latency for latency, _, _ in runs], [timeline(server, *run) for run in slowest]
        finally:
            server.stop()


def timeline(server: Server, latency: float, submitted: float, job_id: str) -> str:
    """Where one job's time went, as the server recorded it (ms after the client's submit)."""
    job = server.get(f"/admin/notebooks/jobs/{job_id}")
    results = job.get("results") or {}

    def at(key: str) -> str:
        return f"{job[key] - submitted * 1000:.0f}" if job.get(key) else "-"

    return (
        f"{latency * 1000:.0f} ms: created +{at('dateCreated')} started +{at('startTime')} "
        f"ended +{at('endTime')} ms; runner {results.get('runnerStartMethod')}, kernel "
        f"{results.get('kernelStartMethod')}, warnings {results.get('warnings') or []}"
    )


def run_job_fresh_client(server: Server, item: str) -> tuple[float, float, str]:
    """One job from its own HTTPS client (clients are not shared between threads here): its latency,
    when it was submitted (epoch s) and its id."""
    client = server.another_client()
    try:
        submitted = time.time()
        latency = client.run_job(item, poll=0.05)  # many jobs in flight: 20 ms polls would load the server
        return latency, submitted, client.last_job
    finally:
        client.http.close()


def wait_completed(server: Server, job_id: str) -> None:
    while True:
        status = server.get(f"/admin/notebooks/jobs/{job_id}")["status"]
        if status == "COMPLETED":
            return
        if status in ("FAILED", "CANCELLED"):
            raise RuntimeError(f"job {job_id} ended {status}")
        time.sleep(0.05)


def ready_kernels(server: Server) -> list[tuple[int, str, int]]:
    """(kernel pid, its start method, its runner's pid) of each ready runner in the pool."""
    found = []
    for ready in (server.data_dir / "jobs").glob("runner-*.ready"):
        try:
            pid, method = ready.read_text().split()
            found.append((int(pid), method, int(ready.stem.split("-")[1])))
        except (OSError, ValueError):
            continue
    return found


def wait_warm(server: Server, count: int, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while len(ready_kernels(server)) < count:
        if time.monotonic() > end:
            raise RuntimeError(f"the pool never had {count} ready kernels")
        time.sleep(0.05)
    time.sleep(0.3)  # the runner has written its file; let it settle into its wait


def kernel_memory(server: Server) -> dict[str, float]:
    uss, pss, runner_uss, methods = [], [], [], set()
    for pid, method, runner in ready_kernels(server):
        try:
            info = psutil.Process(pid).memory_full_info()
            runner_info = psutil.Process(runner).memory_full_info()
        except psutil.Error:
            continue
        uss.append(info.uss / 2**20)
        pss.append(info.pss / 2**20)
        runner_uss.append(runner_info.uss / 2**20)
        methods.add(method)
    return {
        "uss_mib": statistics.mean(uss),
        "pss_mib": statistics.mean(pss),
        "runner_uss_mib": statistics.mean(runner_uss),
        "method": ",".join(methods),
    }


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its descendants, living (their own) and reaped (rusage)."""
    total = 0.0
    root = psutil.Process(pid)
    for proc in (root, *root.children(recursive=True)):
        try:
            total += sum(proc.cpu_times()[:4])
        except psutil.Error:
            continue
    return total


def stock_kernel_rate(seconds: float) -> float:
    """Stock kernels started and stopped per second, two at a time (jupyter_client, back to back)."""
    from throughput import kernel_cycles

    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(kernel_cycles(seconds))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def in_process(runs: int, tmp: Path) -> dict[str, dict[str, list[float]]]:
    import papermill
    from nbclient import NotebookClient

    rows: dict[str, dict[str, list[float]]] = {"nbclient cold": {}, "papermill API": {}, "papermill CLI": {}}
    for label, make in NOTEBOOKS.items():
        src = tmp / f"{label}.ipynb"
        nbformat.write(make(), src)
        out = tmp / f"{label}-out.ipynb"
        for name in rows:
            rows[name][label] = []
        cli = [str(BIN / "papermill"), str(src), str(out), "-p", "x", "2", "--no-progress-bar"]
        measured: dict[str, Callable[[], object]] = {
            "nbclient cold": lambda src=src: NotebookClient(nbformat.read(src, as_version=4)).execute(),
            "papermill API": lambda src=src, out=out: papermill.execute_notebook(
                str(src), str(out), parameters={"x": 2}, progress_bar=False
            ),
            "papermill CLI": lambda cli=cli: subprocess.run(cli, check=True, capture_output=True),
        }
        for i in range(runs + 1):
            for name, run in measured.items():
                began = time.perf_counter()
                run()
                if i:  # the first run of each warms this process's caches
                    rows[name][label].append(time.perf_counter() - began)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=150, help="jobs submitted at once for jobs/s and CPU-s")
    parser.add_argument("--arrival-seconds", type=float, default=60)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--capacity-only", action="store_true", help="skip the latency table")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        bench = Bench(Path(tmp_name))
        rows: dict[str, dict[str, list[float]]] = {}
        if not args.capacity_only:
            rows.update(in_process(args.runs, Path(tmp_name)))
            rows["nbjobs stock, warm"] = bench.latencies(fork=False, pool=1, runs=args.runs)
            rows["nbjobs fork, warm"] = bench.latencies(fork=True, pool=1, runs=args.runs)
            rows["nbjobs stock, cold"] = bench.latencies(fork=False, pool=0, runs=args.runs)
            rows["nbjobs fork, cold"] = bench.latencies(fork=True, pool=0, runs=args.runs)
        kernel_rate = stock_kernel_rate(20)
        stock_rate, stock_cpu, stock_mem = bench.burst(fork=False, jobs=args.burst)
        fork_rate, fork_cpu, fork_mem = bench.burst(fork=True, jobs=args.burst)
        stock_sustained, stock_slowest = bench.sustained(
            fork=False, rate=0.8 * stock_rate, seconds=args.arrival_seconds
        )
        fork_sustained, fork_slowest = bench.sustained(
            fork=True, rate=0.8 * fork_rate, seconds=args.arrival_seconds
        )

    print(f"{'path':22} {'notebook':8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'CLI/x':>7}")
    for name, by_notebook in rows.items():
        for label, times in by_notebook.items():
            p50, p95, top = summary(times)
            cli = statistics.median(rows["papermill CLI"][label]) * 1000
            print(f"{name:22} {label:8} {p50:8.0f} {p95:8.0f} {top:8.0f} {cli / p50:7.1f}")
            figures[f"{name} | {label}"] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1)}
    print()
    print(f"stock kernel start+stop, 2 at a time: {kernel_rate:.2f}/s")
    for name, rate, cpu, mem in (
        ("stock", stock_rate, stock_cpu, stock_mem),
        ("fork", fork_rate, fork_cpu, fork_mem),
    ):
        print(f"nbjobs {name:5} {args.burst} jobs at once: {rate:.2f} jobs/s "
              f"({rate / kernel_rate:.2f}x the stock kernel rate), {cpu:.3f} CPU-s per job, idle ready "
              f"kernel USS {mem['uss_mib']:.1f} MiB PSS {mem['pss_mib']:.1f} MiB (its runner's USS "
              f"{mem['runner_uss_mib']:.1f} MiB)", mem['method'])  # fmt: skip
        figures[f"burst {name}"] = {"jobs_per_s": round(rate, 2), "cpu_s_per_job": round(cpu, 3), **mem}
    for name, times, rate, slowest in (
        ("stock", stock_sustained, stock_rate, stock_slowest),
        ("fork", fork_sustained, fork_rate, fork_slowest),
    ):
        p50, p95, top = summary(times)
        print(f"nbjobs {name:5} at 80 % of capacity ({0.8 * rate:.2f}/s, {len(times)} jobs): "
              f"p50 {p50:.0f} ms, p95 {p95:.0f} ms ({p95 / p50:.1f}x the p50), max {top:.0f} ms")  # fmt: skip
        for line in slowest:
            print(f"  slowest: {line}")
        figures[f"sustained {name}"] = {
            "rate": round(0.8 * rate, 2),
            "p50_ms": round(p50, 1),
            "p95_ms": round(p95, 1),
        }
    figures["stock kernel rate"] = round(kernel_rate, 2)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
