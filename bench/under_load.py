"""The test suite under load: `make test` beside CPU-bound processes and a process keeping memory busy.

    .venv/bin/python bench/under_load.py [--runs 3] [--cpu 4] [--memory-gib 8] [--json FILE] [-- PYTEST ARGS]

Starts ``--cpu`` processes that spin forever and one that allocates ``--memory-gib`` GiB and writes to
every page of it in a loop (so the memory stays resident and the process keeps a core busy), then runs the
whole suite (``python -m pytest`` with CI=true, as `.ci/run` does) ``--runs`` times in a row. Prints one
line per run (passed/failed, seconds, the failing tests) and exits non-zero if any run failed. The load is
stopped however the runs end. This is the run behind `make soak`'s "suite under load" step (issue #17
point 9): a test that sleeps a fixed time or assumes a speed shows up here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = 4096


def spin() -> None:
    while True:
        pass


def keep_memory_busy(gib: float) -> None:
    size = int(gib * 1024**3)
    memory = bytearray(size)  # zero pages: writing below makes them resident
    marks = len(range(0, size, PAGE))
    value = 0
    while True:
        value = (value + 1) % 256
        memory[::PAGE] = bytes([value]) * marks


def run_suite(pytest_args: list[str], log: Path | None) -> tuple[int, float, list[str]]:
    env = dict(os.environ, CI="true")
    started = time.monotonic()
    # its own process group: stopping this script (SIGTERM, Ctrl-C) stops the run and all it started
    # (the e2e fixture's `nbjobs serve`, kernels), rather than leaving them running without it
    suite = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = suite.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(suite.pid, signal.SIGTERM)
        try:
            suite.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(suite.pid, signal.SIGKILL)
        raise
    elapsed = time.monotonic() - started
    if log is not None:  # the whole report, to read why a test failed
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(stdout + stderr)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", stdout, re.MULTILINE)
    print("\n".join(stdout.strip().splitlines()[-1:]), flush=True)
    return suite.returncode, elapsed, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=4, help="CPU-bound processes beside the suite")
    parser.add_argument("--memory-gib", type=float, default=8.0, help="memory kept busy beside the suite")
    parser.add_argument("--json", type=Path, help="write the runs' results here")
    parser.add_argument(
        "--logs", type=Path, default=ROOT / "var", help="run N's pytest report: under-load-N.log"
    )
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args()

    load = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.cpu)]
    if args.memory_gib > 0:
        load.append(multiprocessing.Process(target=keep_memory_busy, args=(args.memory_gib,), daemon=True))
    for process in load:
        process.start()
    print(f"load: {args.cpu} CPU-bound processes, {args.memory_gib:g} GiB kept busy", flush=True)
    results = []
    try:
        time.sleep(5)  # let the memory process reach its size before the first run
        for number in range(1, args.runs + 1):
            code, elapsed, failed = run_suite(args.pytest_args, args.logs / f"under-load-{number}.log")
            verdict = "passed" if code == 0 else f"FAILED (exit {code})"
            print(f"run {number}: {verdict} in {elapsed:.0f} s {' '.join(failed)}", flush=True)
            results.append({"run": number, "exit": code, "seconds": round(elapsed, 1), "failed": failed})
    finally:
        for process in load:
            process.kill()
        for process in load:
            process.join()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(result["exit"] == 0 for result in results) else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # through the finally blocks: load and suite stop
    sys.exit(main())
