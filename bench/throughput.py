"""Throughput: N trivial jobs submitted at once, at worker concurrency 1, 2 and 4.

    .venv/bin/python bench/throughput.py [--jobs 300] [--levels 1 2 4] [--backend embedded|celery|both]

``--backend celery`` runs the same jobs through the distributed mode: `nbjobs serve` publishing to
Redis, two `nbjobs worker` processes sharing the level's concurrency (level 2 = two workers of one
slot each), PostgreSQL as the store (NBJOBS_BENCH_POSTGRES_URL, NBJOBS_BENCH_REDIS_URL). ``both``
measures embedded and Celery at each level in the same run and prints their ratio.

Reports, per level: completion rate (jobs/s, first submit to last end), jobs lost (must be 0), peak
RSS of the server process and of everything under it (runners + kernels), and the server's RSS at
the start and end of the run (flat = no leak). For reference, in the same run: how fast this
machine can start and stop fresh kernels back to back with stock jupyter_client (1 and 2 in
parallel), and the RSS of one idle warm kernel.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

import psutil
from common import BIN, Server, trivial_notebook

POSTGRES_URL = os.environ.get("NBJOBS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("NBJOBS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")


def kernel_cycles(seconds: float) -> int:
    """Start, wait for, and stop fresh kernels back to back for ``seconds``; how many."""
    from jupyter_client.manager import KernelManager

    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        km = KernelManager(kernel_name="python3")
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        count += 1
    return count


def kernel_rate(parallel: int, seconds: float = 15.0) -> float:
    with multiprocessing.get_context("spawn").Pool(parallel) as pool:
        counts = pool.map(kernel_cycles, [seconds] * parallel)
    return sum(counts) / seconds


class RssSampler(threading.Thread):
    """Samples the RSS of a process and of its whole tree every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                own = self.proc.memory_info().rss
                tree = own
                for child in self.proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        tree += child.memory_info().rss
                self.samples.append((own, tree))
            except psutil.Error:
                return


def idle_kernel_rss(server: Server) -> int:
    """RSS of one warm kernel waiting in the pool."""
    time.sleep(4)
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        if "ipykernel" in " ".join(child.cmdline()):
            return child.memory_info().rss
    return 0


class Distributed:
    """A fresh PostgreSQL database, an empty Redis database and two `nbjobs worker` processes."""

    def __init__(self, tmp: Path, concurrency: int) -> None:
        import psycopg
        import redis

        self.admin = psycopg.connect(POSTGRES_URL, autocommit=True)
        self.db = f"nbjobs_bench_{uuid.uuid4().hex[:10]}"
        self.admin.execute(f'CREATE DATABASE "{self.db}"')
        self.env = {
            "NBJOBS_DATABASE_URL": f"{POSTGRES_URL.rsplit('/', 1)[0]}/{self.db}",
            "NBJOBS_BROKER_URL": REDIS_URL,
        }
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.redis.flushdb()
        self.tmp = tmp
        self.slots = [concurrency // 2 + concurrency % 2, concurrency // 2]
        self.procs: list[subprocess.Popen] = []

    def start_workers(self, pool: int) -> None:
        env = {**os.environ, **self.env, "NBJOBS_WARM_POOL_SIZE": str(pool), "NBJOBS_POLL_SECONDS": "0.05"}
        for i, slots in enumerate(s for s in self.slots if s):
            log = open(self.tmp / f"worker-{i}.log", "ab")  # noqa: SIM115 - lives as long as the worker
            argv = [str(BIN / "nbjobs"), "worker", "--concurrency", str(slots),
                    "--data-dir", str(self.tmp / f"w{i}")]  # fmt: skip
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env))
        deadline = time.monotonic() + 60
        logs = [self.tmp / f"worker-{i}.log" for i in range(len(self.procs))]
        while not all(" ready." in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError("a worker did not start; see " + str(self.tmp))
            time.sleep(0.2)
        time.sleep(4)  # warm kernels ready, as the embedded level waits for its own

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(60)
        self.redis.flushdb()
        self.redis.close()
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        self.admin.close()


def run_level(tmp: Path, workers: int, jobs: int, backend: str = "embedded") -> dict:
    data_dir = tmp / f"{backend}-level-{workers}"
    data_dir.mkdir()
    cluster = Distributed(data_dir, workers) if backend == "celery" else None
    try:
        if cluster is None:
            server = Server.start(data_dir, workers=workers, pool=workers)
        else:
            server = Server.start(data_dir, workers=0, pool=0, **cluster.env)
            cluster.start_workers(pool=max(cluster.slots))
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise
    try:
        item = server.add_notebook(trivial_notebook(), "bench")
        idle = idle_kernel_rss(server) if cluster is None else 0
        sampler = RssSampler(server.proc.pid)
        sampler.start()
        start = time.time()
        ids = []
        for _ in range(jobs):
            answer = server.post(
                "/admin/notebooks/executeNotebook",
                itemId=item,
                notebookParameters='{"x": 2}',
                updatePortalItem="false",
            )
            ids.append(answer["jobId"])
        while True:
            listing = server.http.get(
                server.url + "/admin/system/jobs",
                params={"f": "json", "token": server.token, "detail": "true", "num": str(jobs + 10)},
            ).json()
            mine = [j for j in listing["asyncJobs"] if j["jobId"] in set(ids)]
            if len(mine) == jobs and all(j["status"] in ("COMPLETED", "FAILED", "CANCELLED") for j in mine):
                break
            time.sleep(0.5)
        sampler.stop.set()
        sampler.join()
        first = min(j.get("dateCreated") or j["startTime"] for j in mine)
        last = max(j["endTime"] for j in mine)
        completed = sum(1 for j in mine if j["status"] == "COMPLETED")
        own = [s[0] for s in sampler.samples]
        tree = [s[1] for s in sampler.samples]
        return {
            "workers": workers,
            "rate": completed / ((last - first) / 1000),
            "completed": completed,
            "lost": jobs - completed,
            "server_rss_start": own[0] if own else 0,
            "server_rss_end": own[-1] if own else 0,
            "server_rss_peak": max(own, default=0),
            "tree_rss_peak": max(tree, default=0),
            "idle_kernel_rss": idle,
            "wall": time.time() - start,
        }
    finally:
        server.stop()
        if cluster is not None:
            cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--backend", choices=["embedded", "celery", "both"], default="embedded")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    mib = 1024 * 1024
    rate1, rate2 = kernel_rate(1), kernel_rate(2)
    print(f"stock kernel start+stop cycles, back to back: {rate1:.2f}/s (1), {rate2:.2f}/s (2 at once)")
    backends = ["embedded", "celery"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory() as tmp_name:
        for workers in args.levels:
            rates = {}
            for backend in backends:
                r = run_level(Path(tmp_name), workers, args.jobs, backend)
                rates[backend] = r["rate"]
                idle_rss = r["idle_kernel_rss"] / mib
                idle = f"; idle warm kernel {idle_rss:.0f} MiB" if idle_rss else ""
                print(
                    f"{backend} workers={r['workers']}: {r['completed']}/{args.jobs} completed, "
                    f"lost {r['lost']}, "
                    f"{r['rate']:.2f} jobs/s ({r['rate'] / rate2:.0%} of the 2-parallel kernel cycle rate); "
                    f"server RSS {r['server_rss_start'] / mib:.0f} -> {r['server_rss_end'] / mib:.0f} MiB "
                    f"(peak {r['server_rss_peak'] / mib:.0f}), server tree peak "
                    f"{r['tree_rss_peak'] / mib:.0f} MiB{idle}",
                    flush=True,
                )
            if len(rates) == 2:
                print(f"workers={workers}: celery/embedded = {rates['celery'] / rates['embedded']:.0%}")


if __name__ == "__main__":
    main()
