"""Automation records: scheduled tasks and their runs, webhook receivers and their delivery log."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class TaskState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class RunStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting: queued behind a running run, or about to start
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


OPEN_RUNS = frozenset({RunStatus.SCHEDULED, RunStatus.EXECUTING})


@dataclass(frozen=True)
class Task:
    """A schedule that fires runs of one notebook item as its owner."""

    task_id: str
    owner: str
    item_id: str
    type: str
    title: str
    minute: str
    hour: str
    day_of_month: str
    month: str
    day_of_week: str
    time_zone: str
    parameters: dict[str, Any]
    start_date: int
    end_date: int
    max_occurrences: int
    overlap: str
    state: TaskState
    created: int
    updated: int
    occurrences: int = 0
    consecutive_failures: int = 0
    next_fire: int = 0
    last_start: int = 0

    @property
    def active(self) -> bool:
        return self.state == TaskState.ACTIVE


@dataclass(frozen=True)
class TaskRun:
    """One occasion of a task and, once started, the job that ran it."""

    run_id: str
    task_id: str
    scheduled_for: int
    status: RunStatus
    created: int
    updated: int
    result: str = ""
    job_id: str = ""


@dataclass(frozen=True)
class Firing:
    """What ``fire`` writes: the task's new schedule position and the run of the occasion."""

    next_fire: int
    state: TaskState
    counted: bool  # whether this occasion counts towards maxOccurrences (skipped ones do not)
    run: TaskRun = field(repr=False)


DELIVERIES_KEPT = 1000  # per receiver; older entries are dropped as new ones arrive


@dataclass(frozen=True)
class Receiver:
    """A signed HTTP sink that runs ``item_id`` as ``username``. ``secret`` is never rendered."""

    receiver_id: str
    name: str
    item_id: str
    username: str
    secret: str
    signature_headers: tuple[str, ...]
    parameters: dict[str, Any]
    disabled: bool
    created: int
    updated: int


@dataclass(frozen=True)
class Delivery:
    """One event that reached a receiver: accepted (``job_id``) or rejected (``reason``)."""

    delivery_id: str
    receiver_id: str
    received: int
    source: str
    signature_ok: bool
    job_id: str = ""
    reason: str = ""
