"""Is the kernel a job records the kernel that ran its cells? Back-to-back jobs on a loaded server.

    .venv/bin/python bench/kernel_identity.py [--jobs 400] [--cpu 4]

Starts `nbjobs serve` (1 worker, warm pool 1: each job takes the runner the pool started when the last
one ended, often still warming up), runs ``--jobs`` one-cell jobs one after another, each printing
``os.getpid()``, and compares that pid with the kernel pid the server recorded for the job (what a
cancel signals, what limits and the CPU figure apply to). Prints how many jobs had another pid, how
many had no output, and their times. ``--cpu`` processes spin beside it: the fault this found (a fork
request asked twice, two kernels on one job's sockets; docs/reliability.md) needed a runner
descheduled at the wrong moment, so it showed under load only: 8 of 126 jobs before the fix, 0 of 400
after.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
from pathlib import Path

import nbformat
from common import Server, _notebook, summary
from nbformat.v4 import new_code_cell
from under_load import spin

from nbjobs.settings import load_settings
from nbjobs.store.engine import open_store


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--cpu", type=int, default=4, help="CPU-bound processes beside the server")
    args = parser.parse_args()
    load = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.cpu)]
    for process in load:
        process.start()
    data_dir = Path(tempfile.mkdtemp(prefix="nbjobs-identity-"))
    server = Server.start(data_dir, workers=1, pool=1)
    store = open_store(load_settings({}, data_dir=data_dir), migrate=False)
    wrong: list[str] = []
    silent: list[str] = []
    times: list[float] = []
    try:
        item = server.add_notebook(_notebook([new_code_cell("import os\nprint(os.getpid())")]), "identity")
        for _ in range(args.jobs):
            times.append(server.run_job(item))
            job_id = server.last_job
            answer = server.http.get(
                f"{server.url}/admin/notebooks/jobs/{job_id}/output", params={"token": server.token}
            )
            executed = nbformat.reads(answer.text, as_version=4)
            printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
            recorded = store.processes(job_id)[1]
            if not printed.strip():
                silent.append(job_id)
            elif int(printed) != recorded:
                wrong.append(f"{job_id}: ran in {int(printed)}, recorded {recorded}")
    finally:
        store.close()
        server.stop()
        for process in load:
            process.terminate()
    p50, p95, worst = summary(times)
    print(f"{len(times)} jobs beside {args.cpu} CPU-bound processes: {len(wrong)} recorded another kernel, "
          f"{len(silent)} had no output; job ms p50 {p50:.0f}, p95 {p95:.0f}, max {worst:.0f}")  # fmt: skip
    for line in wrong[:10]:
        print("  " + line)
    return 1 if wrong or silent else 0


if __name__ == "__main__":
    sys.exit(main())
