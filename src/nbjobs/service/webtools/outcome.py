"""What a web tool job looks like to a GP client: its esriJob status, messages and typed results.

A pure function of the job and the tool's parameters. A run that completed but left a registered output
unset (or of the wrong type) is a failed GP job: the client asked for typed outputs and did not get them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nbjobs.models.jobs import FailureReason, Job, JobStatus
from nbjobs.service.webtools.params import ToolParams
from nbjobs.service.webtools.values import typed_output

SUBMITTED = "esriJobSubmitted"
EXECUTING = "esriJobExecuting"
SUCCEEDED = "esriJobSucceeded"
FAILED = "esriJobFailed"
TIMED_OUT = "esriJobTimedOut"
CANCELLING = "esriJobCancelling"
CANCELLED = "esriJobCancelled"
ENDED = frozenset({SUCCEEDED, FAILED, TIMED_OUT, CANCELLED})

INFO = "esriJobMessageTypeInformative"
WARNING = "esriJobMessageTypeWarning"
ERROR = "esriJobMessageTypeError"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TRACEBACK_LINES = 40


@dataclass(frozen=True)
class Outcome:
    status: str
    messages: list[dict[str, str]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)  # output name -> GP value; only on success

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def errors(self) -> list[str]:
        return [m["description"] for m in self.messages if m["type"] == ERROR]


def outcome(job: Job, params: ToolParams, task_name: str) -> Outcome:
    """The GP view of ``job``, a call of ``task_name`` with ``params``."""
    messages = [_msg(INFO, "Submitted.")]
    if job.start_time:
        messages.append(_msg(INFO, "Executing..."))
    if job.status == JobStatus.SUBMITTED:
        return Outcome(SUBMITTED, messages)
    if job.status == JobStatus.EXECUTING:
        return Outcome(EXECUTING, messages)
    if job.status == JobStatus.CANCELLING:
        return Outcome(CANCELLING, messages)
    if job.status == JobStatus.CANCELLED:
        return Outcome(CANCELLED, [*messages, _msg(WARNING, "Cancelled.")])
    if job.status == JobStatus.FAILED:
        return _failed(job, messages, task_name)
    results, errors = _typed_results(job, params)
    if errors:
        failed = [
            *messages,
            *(_msg(ERROR, e) for e in errors),
            _msg(ERROR, f"Failed to execute ({task_name})."),
        ]
        return Outcome(FAILED, failed)
    seconds = max(job.end_time - job.start_time, 0) / 1000
    done = f"Succeeded at {_when(job.end_time)} (Elapsed Time: {seconds:.2f} seconds)"
    return Outcome(SUCCEEDED, [*messages, _msg(INFO, done)], results)


def _failed(job: Job, messages: list[dict[str, str]], task_name: str) -> Outcome:
    failure = job.failure
    status = TIMED_OUT if failure is not None and failure.reason == FailureReason.TIMEOUT else FAILED
    if failure is not None:
        where = f" (cell {failure.cell_index})" if failure.cell_index is not None else ""
        messages.append(_msg(ERROR, f"{failure.message}{where}"))
        if failure.traceback:
            lines = [_ANSI.sub("", line) for line in failure.traceback[-_TRACEBACK_LINES:]]
            messages.append(_msg(ERROR, "\n".join(lines)))
    messages.append(_msg(ERROR, f"Failed to execute ({task_name})."))
    return Outcome(status, messages)


def _typed_results(job: Job, params: ToolParams) -> tuple[dict[str, Any], list[str]]:
    values = job.results.get("outputValues") or {}
    results: dict[str, Any] = {}
    errors: list[str] = []
    for param in params.outputs:
        read = values.get(param.name)
        if read is None or "value" not in read:
            why = (read or {}).get("error", "the run did not report it")
            errors.append(f"Output parameter '{param.name}' was not set by the notebook ({why}).")
            continue
        try:
            results[param.name] = typed_output(param, read["value"])
        except ValueError as exc:
            errors.append(f"Invalid {exc}.")
    return results, errors


def _msg(kind: str, text: str) -> dict[str, str]:
    return {"type": kind, "description": text}


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%a %b %d %H:%M:%S %Y")
