"""Submit → COMPLETED latency: nbjobs over HTTPS (warm pool, cold, web tool execute) vs papermill, nbclient.

    .venv/bin/python bench/latency.py [--runs 30] [--only-cli]

``--only-cli``: just the two command lines, ``nbjobs run`` and papermill's CLI (no server rows).

All measured in one run on this machine; every run of every path uses a fresh kernel. papermill's
CLI and ``nbjobs run`` are a new process per run (alternating, so both see the same load);
papermill's Python API and nbclient run in this (warm) process. For
nbjobs the clock starts before the executeNotebook POST and stops when a GET of the job says
COMPLETED (polled every 10 ms); "warm" waits for the pool to refill between runs (a job arriving at a
server that is not saturated), "cold" runs the server with NBJOBS_WARM_POOL_SIZE=0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import nbformat
from common import BIN, Server, summary, trivial_notebook, twenty_cell_notebook


def nbjobs_times(tmp: Path, nb: nbformat.NotebookNode, runs: int, *, pool: int) -> list[float]:
    data_dir = tmp / f"server-{pool}-{len(nb.cells)}"
    data_dir.mkdir()
    server = Server.start(data_dir, workers=1, pool=pool)
    try:
        item = server.add_notebook(nb, "bench")
        server.run_job(item)  # first job: imports, caches
        times = []
        for _ in range(runs):
            if pool:
                time.sleep(1.2)  # let the pool refill: measure a job that finds a ready kernel
            times.append(server.run_job(item))
        return times
    finally:
        server.stop()


def webtool_times(tmp: Path, runs: int) -> list[float]:
    """A trivial web tool (x: Long in, y = x + 1 out) called with the synchronous GP ``execute``."""
    data_dir = tmp / "server-webtool"
    data_dir.mkdir()
    server = Server.start(data_dir, workers=1, pool=1)
    try:
        nb = trivial_notebook()
        nb.metadata["nbjobs"] = {
            "webtool": {
                "inputs": [{"name": "x", "type": "Long", "required": True}],
                "outputs": [{"name": "y", "type": "Long"}],
            }
        }
        item = server.add_notebook(nb, "tool")
        props = {"provider": "notebooks", "type": "GPServer",
                 "jsonProperties": {"title": "Trivial", "notebookId": item,
                                    "tasks": [{"type": "notebook", "name": "Trivial"}]}}  # fmt: skip
        url = server.post("/admin/services/createService", serviceProperties=json.dumps(props))["url"]
        execute = url[len(server.url) :] + "/Trivial/execute"
        times = []
        for i in range(runs + 1):
            time.sleep(1.2)  # a call that finds a ready kernel, as for the executeNotebook rows
            start = time.perf_counter()
            answer = server.post(execute, x="41")
            elapsed = time.perf_counter() - start
            assert answer["results"][0]["value"] == 42, answer
            if i:  # the first call warms caches
                times.append(elapsed)
        return times
    finally:
        server.stop()


def cli_times(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Each command run ``runs`` times, interleaved: a burst of load hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    return times


def timed(fn: Callable[[], None], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--only-cli", action="store_true", help="only nbjobs run and papermill's CLI")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import papermill
    from nbclient import NotebookClient

    rows: list[tuple[str, str, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for label, nb in (("trivial", trivial_notebook()), ("20-cell", twenty_cell_notebook())):
            src = tmp / f"{label}.ipynb"
            nbformat.write(nb, src)
            out = tmp / "out.ipynb"
            tail = [str(src), str(out), "-p", "x", "2", "--no-progress-bar"]
            commands = {
                "papermill CLI": [str(BIN / "papermill"), *tail],
                "nbjobs run (CLI)": [str(BIN / "nbjobs"), "run", *tail],
            }
            clis = cli_times(commands, args.runs)
            rows += [(label, name, times) for name, times in clis.items()]
            if args.only_cli:
                continue
            rows.append((label, "nbjobs HTTPS, warm pool", nbjobs_times(tmp, nb, args.runs, pool=1)))
            rows.append((label, "nbjobs HTTPS, cold (pool 0)", nbjobs_times(tmp, nb, args.runs, pool=0)))
            rows.append(
                (
                    label,
                    "papermill Python API",
                    timed(
                        lambda src=src, out=out: papermill.execute_notebook(
                            str(src), str(out), parameters={"x": 2}, progress_bar=False
                        ),
                        args.runs,
                    ),
                )
            )
            rows.append(
                (
                    label,
                    "nbclient, cold kernel",
                    timed(
                        lambda nb=nb, out=out: nbformat.write(
                            NotebookClient(nbformat.from_dict(nb), kernel_name="python3").execute(), out
                        ),
                        args.runs,
                    ),
                )
            )
        if not args.only_cli:
            rows.append(("trivial", "web tool execute (sync), warm", webtool_times(tmp, args.runs)))
    print(f"submit -> COMPLETED, {args.runs} runs per row, fresh kernel per run (ms)")
    print(f"{'notebook':9} {'path':30} {'p50':>7} {'p95':>7} {'max':>7} {'CLI/x':>7} {'API/x':>7}")
    for label in ("trivial", "20-cell"):
        mine = {name: summary(times) for lab, name, times in rows if lab == label}
        cli = mine["papermill CLI"][0]
        api = mine["papermill Python API"][0] if "papermill Python API" in mine else 0.0
        for name, (p50, p95, worst) in mine.items():
            api_x = f"{api / p50:7.1f}" if api else f"{'-':>7}"  # --only-cli: no Python API row
            print(f"{label:9} {name:30} {p50:7.1f} {p95:7.1f} {worst:7.1f} {cli / p50:7.1f} {api_x}")
        run = mine["nbjobs run (CLI)"][0]
        print(f"{label:9} nbjobs run / papermill CLI: {run / cli:.2f}x the time (goal <= 0.6)")
    print("CLI/x and API/x: papermill CLI (resp. Python API) p50 divided by the row's p50.")


if __name__ == "__main__":
    main()
