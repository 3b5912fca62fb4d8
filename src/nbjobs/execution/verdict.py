"""How a run's end becomes its job's final status, failure and results.

Pure decisions over what the supervisor saw: the runner's final ``done`` event (or none), the staged stop
it began (or none), the runner's exit code and log, and whether the kernel hit its memory limit. In order:
a stop decides first (CANCELLED, or FAILED with TIMEOUT); then the runner's own report (COMPLETED unless
it failed or a requested output is missing); without a report the runner died (FAILED, KERNEL_DIED). A
kernel that died or raised MemoryError under a runtime memory limit is reported as MEMORY_LIMIT.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbjobs.models.jobs import Failure, FailureReason, JobStatus

log = logging.getLogger("nbjobs.execution.supervisor")  # the supervisor's log: this is its decision

STDERR_TAIL = 4000  # bytes of the runner's log read for a diagnosis


@dataclasses.dataclass(frozen=True)
class RunEnd:
    """What the supervisor saw of a run once its processes were gone."""

    done: Mapping[str, Any]  # the runner's "done" event; empty when it never sent one
    stop_reason: FailureReason | None  # the staged stop begun (CANCELLED or TIMEOUT), if any
    deadline_minutes: float  # the limit a TIMEOUT names
    memory_bytes: int  # the runtime's memory limit (0: none)
    oom: bool  # the limit backend saw the kernel killed for memory
    returncode: int | None
    log_path: Path  # the runner's (and its kernel's) stdout/stderr
    job_id: str


def results_of(done: Mapping[str, Any], *, has_output: bool) -> dict[str, Any]:
    """The job's ``results`` from the runner's report."""
    results: dict[str, Any] = {
        "cellsExecuted": done.get("cells_executed", 0),
        "outputTruncated": bool(done.get("output_truncated", False)),
        "hasOutputNotebook": has_output,
    }
    if done.get("truncated_cells"):
        results["truncatedCells"] = done["truncated_cells"]
    if done.get("values"):
        results["outputValues"] = done["values"]
    if done.get("warnings"):
        results["warnings"] = list(done["warnings"])  # what the run worked around (an unnamed kernelspec)
    if done.get("start_method"):
        results["kernelStartMethod"] = done["start_method"]  # fork | spawn (docs/performance.md)
    if done.get("runner_start_method"):
        results["runnerStartMethod"] = done["runner_start_method"]  # the job runner's: fork | spawn
    if done.get("cpu_seconds"):
        results["cpuSeconds"] = done["cpu_seconds"]  # the kernel's CPU time (usage statistics)
    return results


def verdict(end: RunEnd) -> tuple[JobStatus, Failure | None]:
    """The job's final status and, unless COMPLETED, why."""
    done = end.done
    if end.stop_reason == FailureReason.CANCELLED:
        return JobStatus.CANCELLED, Failure(FailureReason.CANCELLED, "The job was cancelled")
    if end.stop_reason is not None:
        message = f"The job exceeded its time limit of {end.deadline_minutes:g} minutes"
        return JobStatus.FAILED, Failure(FailureReason.TIMEOUT, message)
    if "failure" in done:
        failure = Failure.from_wire(done["failure"]) if done["failure"] else None
        if failure is None:
            failure = missing_outputs(done.get("values") or {})
        if failure is None:
            return JobStatus.COMPLETED, None
        if failure.reason == FailureReason.KERNEL_DIED:
            failure = with_last_words(failure, end.log_path)
        return JobStatus.FAILED, memory_limit(failure, end.memory_bytes, end.oom)
    path = end.log_path
    tail = path.read_bytes()[-STDERR_TAIL:].decode(errors="replace") if path.exists() else ""
    message = f"The job runner exited unexpectedly (exit code {end.returncode})"
    log.error("%s for job %s: %s", message, end.job_id, tail)
    failure = Failure(FailureReason.KERNEL_DIED, message)
    return JobStatus.FAILED, memory_limit(failure, end.memory_bytes, end.oom)


def memory_limit(failure: Failure, limit: int, oom: bool) -> Failure:
    """Name the runtime's memory limit as the reason when it is what ended the run."""
    if not limit:
        return failure
    killed = oom and failure.reason == FailureReason.KERNEL_DIED
    refused = failure.reason == FailureReason.CELL_ERROR and failure.ename == "MemoryError"
    if not (killed or refused):
        return failure
    what = "was killed" if killed else "could not allocate more"
    message = f"The kernel exceeded the runtime's memory limit of {limit / 2**20:.0f} MiB and {what}"
    return dataclasses.replace(failure, reason=FailureReason.MEMORY_LIMIT, message=message)


def missing_outputs(values: Mapping[str, Mapping[str, Any]]) -> Failure | None:
    """A failure naming every requested output the notebook did not set (or that could not be read)."""
    missing = [
        f"'{name}' ({read.get('error', 'not set')})" for name, read in values.items() if "value" not in read
    ]
    if not missing:
        return None
    return Failure(FailureReason.OUTPUT_MISSING, "Output not set by the notebook: " + ", ".join(missing))


def with_last_words(failure: Failure, log_path: Path) -> Failure:
    """Add the last line the kernel wrote to stderr (e.g. "No module named ipykernel_launcher")."""
    try:
        tail = log_path.read_bytes()[-STDERR_TAIL:].decode(errors="replace")
    except OSError:
        return failure
    lines = [line.strip() for line in tail.splitlines() if line.strip() and "WARNING" not in line]
    if not lines:
        return failure
    return dataclasses.replace(failure, message=f"{failure.message}: {lines[-1][:300]}")
