"""Submit → COMPLETED latency of a trivial notebook job, against papermill and nbclient in the same run.

    .venv/bin/python bench/job_latency.py [--runs 10]

Every figure is a median over ``--runs`` sequential runs on this machine, each in a fresh kernel.
nbjobs is measured end to end through its store and local pool (runner process + fresh kernel);
papermill and nbclient are measured in-process (their fastest use), so the ratio is conservative.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from nbjobs.app import NbJobs
from nbjobs.models import JobStatus, Principal
from nbjobs.settings import load_settings


def trivial_notebook() -> nbformat.NotebookNode:
    nb = new_notebook(
        cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]}), new_code_cell("y = x + 1")]
    )
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def time_nbjobs(runs: int, tmp: Path) -> list[float]:
    app = NbJobs.from_settings(load_settings({}, data_dir=tmp / "nbjobs", workers=1, poll_seconds=0.01))
    app.start()
    admin = Principal("bench", is_admin=True)
    data = nbformat.writes(trivial_notebook()).encode()
    times = []
    try:
        for _ in range(runs):
            start = time.perf_counter()
            job = app.service.submit(admin, data, parameters={"x": 2})
            while (current := app.store.get(job.job_id)).status not in {
                JobStatus.COMPLETED,
                JobStatus.FAILED,
            }:
                time.sleep(0.002)
            assert current.status == JobStatus.COMPLETED, current.failure
            times.append(time.perf_counter() - start)
    finally:
        app.stop()
    return times


def time_papermill(runs: int, tmp: Path) -> list[float]:
    import papermill

    src = tmp / "in.ipynb"
    nbformat.write(trivial_notebook(), src)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        papermill.execute_notebook(
            str(src), str(tmp / "pm-out.ipynb"), parameters={"x": 2}, progress_bar=False
        )
        times.append(time.perf_counter() - start)
    return times


def time_nbclient(runs: int, tmp: Path) -> list[float]:
    from nbclient import NotebookClient

    times = []
    for _ in range(runs):
        nb = trivial_notebook()
        start = time.perf_counter()
        NotebookClient(nb, kernel_name="python3").execute()
        nbformat.write(nb, tmp / "nbc-out.ipynb")
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        results = {
            "nbjobs (submit -> COMPLETED)": time_nbjobs(args.runs, tmp),
            "papermill.execute_notebook": time_papermill(args.runs, tmp),
            "nbclient NotebookClient.execute": time_nbclient(args.runs, tmp),
        }
    base = statistics.median(results["papermill.execute_notebook"])
    print(f"trivial notebook, {args.runs} sequential runs each, fresh kernel per run")
    print(f"{'path':34} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'vs papermill':>13}")
    for name, times in results.items():
        med = statistics.median(times)
        lo, hi = min(times) * 1000, max(times) * 1000
        print(f"{name:34} {med * 1000:10.0f} {lo:8.0f} {hi:8.0f} {base / med:12.2f}x")


if __name__ == "__main__":
    main()
