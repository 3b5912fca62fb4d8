"""Where a forked kernel's private memory comes from (issue 15's USS goal, measured by stage).

    .venv/bin/python bench/fork_memory.py [--rehearse N] [--fill-pools]

Builds the state the runtime template forks from (``BASE_MODULES``, the probe's kernel modules,
``gc.collect()`` and ``gc.freeze()``), forks a child and in it starts an ipykernel as
``nbjobs.execution.fork.child`` does (``IPKernelApp.initialize``, one cell), reading the child's USS
(``Private_Clean + Private_Dirty`` of ``/proc/self/smaps_rollup``) after each step. Then it prints
which mappings hold that private memory, and, from a second child that runs the same steps under
``tracemalloc``, how much of it is new Python objects. The rest is template pages the child wrote to:
copied on write.

Two experiments, each a change to the template before ``gc.freeze()``:
``--rehearse N`` builds and drops a plain IPython shell N times and runs cells in it (so the code the
kernel runs is already specialised, and its caches filled, in the template); ``--fill-pools`` fills
the free blocks of the template's partly used allocator pools, so that the child's allocations land
in pools of its own instead of writing into the template's.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from nbjobs.execution.fork import child, probe, template  # noqa: E402

STEPS = (
    "init_pdb",  # the first step after the application's config and command-line parsing
    "init_connection_file",
    "init_sockets",
    "init_heartbeat",
    "init_io",
    "init_signal",
    "init_kernel",
    "init_shell",
    "init_code",
)


def uss_mib() -> float:
    fields = {}
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            parts = line.split()
            if parts[0] in ("Private_Clean:", "Private_Dirty:"):
                fields[parts[0]] = int(parts[1])
    return sum(fields.values()) / 1024


def private_by_mapping() -> dict[str, float]:
    """Private KiB per kind of mapping: the allocator's arenas, malloc's heap, a library's data."""
    totals: dict[str, float] = {}
    name = ""
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            parts = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+$", parts[0]):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                path = " ".join(parts[5:])
                if not path:
                    size = (end - start) // 1024
                    path = (
                        "[anonymous: thread stack]"
                        if size in (8192, 8196)
                        else "[anonymous: pymalloc arenas and other]"
                    )
                name = os.path.basename(path) if path.startswith("/") else path
            elif parts[0] in ("Private_Clean:", "Private_Dirty:"):
                totals[name] = totals.get(name, 0.0) + int(parts[1]) / 1024
    return totals


def build_template(rehearse: int, fill_pools: bool) -> list[Any]:
    for name in template.BASE_MODULES:
        importlib.import_module(name)
    probe.import_all(probe.kernel_modules(child.DEFAULT_EXTRA_ARGS))
    for _ in range(rehearse):
        _rehearse_shell()
    gc.collect()
    held = _fill_pools() if fill_pools else []
    gc.freeze()
    return held


def _rehearse_shell() -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    for _ in range(3):
        shell.run_cell("x = 1 + 1\nprint(x)", store_history=True, silent=True)
    atexit.unregister(shell.atexit_operations)
    InteractiveShell.clear_instance()
    sys.displayhook, sys.excepthook = sys.__displayhook__, sys.__excepthook__


def _fill_pools() -> list[Any]:
    """Allocate exactly the free blocks pymalloc reports for each size class (three passes)."""
    held: list[Any] = []
    for _ in range(3):
        saved = os.dup(2)
        with tempfile.TemporaryFile() as report:
            os.dup2(report.fileno(), 2)
            sys._debugmallocstats()
            os.dup2(saved, 2)
            os.close(saved)
            report.seek(0)
            text = report.read().decode()
        for match in re.finditer(r"^\s+\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)$", text, re.MULTILINE):
            size, avail = int(match.group(1)), int(match.group(2))
            for i in range(avail):  # objects whose allocation is exactly one block of that class
                held.append(object() if size == 16 else float(i) if size == 32 else b"x" * (size - 33))
    return held


def measure_child(traced: bool) -> list[tuple[str, float]]:
    """Fork, start a kernel step by step, report (step, MiB) pairs: USS, or traced Python bytes."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            marks = _child_steps(traced)
            os.write(write_end, json.dumps(marks).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 1 << 16):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    return [tuple(mark) for mark in json.loads(data)]


def _child_steps(traced: bool) -> list[Any]:
    import tracemalloc

    from ipykernel.kernelapp import IPKernelApp

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    if traced:
        tracemalloc.start()

    def now() -> float:
        return tracemalloc.get_traced_memory()[0] / 2**20 if traced else uss_mib()

    marks: list[Any] = [("forked", now())]
    for step in STEPS:
        original = getattr(IPKernelApp, step)

        def wrapped(self: Any, *args: Any, _original: Any = original, _step: str = step, **kw: Any) -> Any:
            result = _original(self, *args, **kw)
            marks.append((_step, now()))
            return result

        setattr(IPKernelApp, step, wrapped)
    workdir = tempfile.mkdtemp(prefix="nbjobs-fork-memory-")
    app = IPKernelApp.instance()
    marks.append(("IPKernelApp()", now()))
    app.initialize(["-f", os.path.join(workdir, "kernel.json"), *child.DEFAULT_EXTRA_ARGS])
    app.shell.run_cell("x = 1 + 1", store_history=True)
    marks.append(("one cell run", now()))
    if not traced:
        marks.append(("mappings", private_by_mapping()))
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rehearse", type=int, default=0, help="build and drop an IPython shell N times first"
    )
    parser.add_argument(
        "--fill-pools", action="store_true", help="fill the allocator's partly used pools first"
    )
    options = parser.parse_args()
    held = build_template(options.rehearse, options.fill_pools)
    print(f"template: USS {uss_mib():.1f} MiB, rehearse={options.rehearse}, fill_pools={options.fill_pools}"
          f" ({len(held)} blocks filled)")  # fmt: skip
    uss = measure_child(traced=False)
    python = dict(measure_child(traced=True))
    mappings = uss.pop()[1]
    print(f"{'step (child)':24} {'USS MiB':>8} {'+step':>6} {'new Python MiB':>15}")
    previous = 0.0
    for step, value in uss:
        print(f"{step:24} {value:8.1f} {value - previous:+6.1f} {python.get(step, 0.0):15.2f}")
        previous = value
    print("private memory of the child by mapping (MiB):")
    for name, mib in sorted(mappings.items(), key=lambda item: -item[1])[:6]:
        print(f"  {mib:6.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
