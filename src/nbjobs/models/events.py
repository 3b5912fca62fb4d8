"""What the parts that move jobs report, and the state a scrape reads back.

``JobEvents`` is the seam between the code that writes a job's status (``JobService.submit`` and
``cancel``, the supervisor, recovery) and whoever counts it (``telemetry.metrics.Metrics``). Each call
comes after the write succeeded: a fenced-out or lost write is never reported, so a job's end is counted
once, by the writer that won. ``NO_EVENTS`` is the default of every part built without one (tests).

``JobCount``, ``PoolState`` and ``Slots`` are read at scrape time (state, not events): the job table's
jobs not ended, a warm pool's kernels and takes, a process's job slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nbjobs.models.jobs import Job, JobStatus, JobType


class JobEvents(Protocol):
    def submitted(self, job: Job) -> None:
        """``job`` was committed SUBMITTED (a new job)."""

    def started(self, job: Job) -> None:
        """``job`` was claimed (EXECUTING, ``start_time`` set) and its run begins."""

    def kernel_started(self, job: Job, seconds: float, *, warm: bool) -> None:
        """The run's kernel is up: ``seconds`` it took to start (``warm``: started ahead by the pool)."""

    def ended(self, job: Job) -> None:
        """``job`` reached an ended status (the one write that won)."""


class NoEvents:
    """Reports nothing: the default where no metrics are wired."""

    def submitted(self, job: Job) -> None:
        return None

    def started(self, job: Job) -> None:
        return None

    def kernel_started(self, job: Job, seconds: float, *, warm: bool) -> None:
        return None

    def ended(self, job: Job) -> None:
        return None


NO_EVENTS: JobEvents = NoEvents()  # stateless, so one shared instance is harmless


@dataclass(frozen=True)
class JobCount:
    """How many jobs of one type and runtime are in one status now."""

    type: JobType
    status: JobStatus
    runtime: str  # the runtime's name as the job recorded it
    count: int


@dataclass(frozen=True)
class PoolState:
    """One warm pool now: kernels ready to take, and takes since the process started."""

    kernel: str
    ready: int
    hits: int  # takes that found a waiting runner
    misses: int  # takes that started a runner cold


@dataclass(frozen=True)
class Slots:
    """A process's job slots now (threads of the local pool, or a worker's concurrency)."""

    busy: int
    total: int

    @property
    def free(self) -> int:
        return max(self.total - self.busy, 0)
