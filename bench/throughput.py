"""Throughput: N trivial jobs submitted at once, at worker concurrency 1, 2 and 4.

    .venv/bin/python bench/throughput.py [--jobs 300] [--levels 1 2 4]

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
import tempfile
import threading
import time
import warnings
from pathlib import Path

import psutil
from common import Server, trivial_notebook


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


def run_level(tmp: Path, workers: int, jobs: int) -> dict:
    data_dir = tmp / f"level-{workers}"
    data_dir.mkdir()
    server = Server.start(data_dir, workers=workers, pool=workers)
    try:
        item = server.add_notebook(trivial_notebook(), "bench")
        idle = idle_kernel_rss(server)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    mib = 1024 * 1024
    rate1, rate2 = kernel_rate(1), kernel_rate(2)
    print(f"stock kernel start+stop cycles, back to back: {rate1:.2f}/s (1), {rate2:.2f}/s (2 at once)")
    with tempfile.TemporaryDirectory() as tmp_name:
        for workers in args.levels:
            r = run_level(Path(tmp_name), workers, args.jobs)
            print(
                f"workers={r['workers']}: {r['completed']}/{args.jobs} completed, lost {r['lost']}, "
                f"{r['rate']:.2f} jobs/s ({r['rate'] / rate2:.0%} of the 2-parallel kernel cycle rate); "
                f"server RSS {r['server_rss_start'] / mib:.0f} -> {r['server_rss_end'] / mib:.0f} MiB "
                f"(peak {r['server_rss_peak'] / mib:.0f}), server+runners+kernels peak "
                f"{r['tree_rss_peak'] / mib:.0f} MiB; idle warm kernel {r['idle_kernel_rss'] / mib:.0f} MiB"
            )


if __name__ == "__main__":
    main()
