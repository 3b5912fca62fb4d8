"""The scheduler: ``tick(now)`` fires due task occasions as executeNotebook jobs and records outcomes.

Every API replica may tick; correctness comes from the store, not from a lock:

* an occasion is claimed by ``TaskStore.fire`` — a compare-and-set on the task's ``next_fire`` plus a
  unique (task, occasion) run key, in one transaction — so it fires once however many schedulers run;
* a queued run is started by a compare-and-set on its status, and a run is ended (and its outcome counted
  towards the five-failures rule) by a compare-and-set too.

Misfire policy (Quartz's "fire once now"): after downtime, all missed occasions of a task collapse into
one run, started at the first tick, whose result says it fired late; the schedule then continues from
now. Overlap policy per task: ``skip`` (default) records a ``skipped`` run while the previous run is
still going; ``queue`` keeps one ``scheduled`` run waiting and starts it when the previous one ends
(further occasions are skipped while one is waiting). Skipped occasions do not count towards
``maxOccurrences``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from nbjobs.clock import Clock
from nbjobs.errors import InvalidRequest, NbJobsError
from nbjobs.models.automation import Firing, RunStatus, Task, TaskRun, TaskState
from nbjobs.models.jobs import JobStatus, RetryPolicy
from nbjobs.models.parameters import NotebookParameters
from nbjobs.models.portal_stores import TaskStore
from nbjobs.models.stores import JobStore
from nbjobs.service.accounts.users import UserService
from nbjobs.service.authz import SCHEDULE_NOTEBOOKS, require_privilege
from nbjobs.service.automation.tasks import first_fire, new_task_id
from nbjobs.service.jobs.execute_notebook import NotebookExecution

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 5  # ArcGIS: "If a task fails five times, it is stopped."
MISFIRE_GRACE_MS = 60_000  # later than this, a run is marked as fired late
STALE_START_MS = 5 * 60_000  # an executing run with no job after this lost its scheduler mid-start


class RunLauncher(Protocol):
    def launch(self, task: Task, run_id: str) -> str:
        """Submit the run's job and return its id; NbJobsError when it cannot be started."""


class NotebookLauncher:
    """Starts a run as an executeNotebook job owned by the task's owner, through executeNotebook."""

    def __init__(self, users: UserService, notebooks: NotebookExecution) -> None:
        self.users = users
        self.notebooks = notebooks

    def launch(self, task: Task, run_id: str) -> str:
        user = self.users.get(task.owner)
        if user.disabled:
            raise InvalidRequest(f"The task owner's account '{task.owner}' is disabled.")
        require_privilege(user, SCHEDULE_NOTEBOOKS)
        p = task.parameters
        job = self.notebooks.execute(
            user,
            task.item_id,
            update_portal_item=bool(p.get("updatePortalItem", True)),
            # parsed when the task was defined (normalize_parameters); stored since, so trusted
            parameters=NotebookParameters.trusted(p.get("notebookParameters") or {}),
            save_injected_parameters=bool(p.get("saveInjectedParameters", False)),
            timeout_minutes=p.get("executionTimeoutInMinutes"),
            runtime_id=p.get("notebookRuntimeId", ""),
            task_id=task.task_id,
            run_id=run_id,
            retry=RetryPolicy.from_wire(p),  # checked when the task was defined
        )
        return job.job_id


@dataclass
class TickReport:
    """What one tick did; for logs and tests."""

    fired: int = 0  # runs started for an occasion
    queued: int = 0
    skipped: int = 0
    started_from_queue: int = 0
    finished: int = 0
    lost_races: int = 0  # occasions another scheduler claimed first
    misfired: int = 0  # occasions this tick claimed later than the misfire grace (fired late)


class Scheduler:
    """Steppable: each ``tick`` is one pass; ``app.py`` calls it from its housekeeping loop."""

    def __init__(
        self,
        tasks: TaskStore,
        jobs: JobStore,
        launcher: RunLauncher,
        clock: Clock,
        *,
        max_failures: int = MAX_CONSECUTIVE_FAILURES,
        misfire_grace_ms: int = MISFIRE_GRACE_MS,
    ) -> None:
        self.tasks = tasks
        self.jobs = jobs
        self.launcher = launcher
        self.clock = clock
        self.max_failures = max_failures
        self.misfire_grace_ms = misfire_grace_ms

    def tick(self, now: int | None = None) -> TickReport:
        """Record ended runs, start queued runs whose turn came, and fire every due occasion."""
        now = self.clock() if now is None else now
        report = TickReport()
        self._settle(now, report)
        self._start_queued(now, report)
        for task in self.tasks.due(now):
            try:
                self._fire(task, now, report)
            except Exception:  # one broken task must not stop the others
                log.exception("scheduler: task %s could not fire", task.task_id)
        return report

    # -- outcomes -----------------------------------------------------------------------------------
    def _settle(self, now: int, report: TickReport) -> None:
        for run in self.tasks.open_runs():
            if run.status != RunStatus.EXECUTING:
                continue
            if not run.job_id:
                if now - run.updated > STALE_START_MS:
                    self._finish(run, RunStatus.FAILED, "The scheduler stopped before the job started.", now)
                    report.finished += 1
                continue
            job = self.jobs.get(run.job_id)
            if job is None:
                self._finish(run, RunStatus.FAILED, f"Job {run.job_id} no longer exists.", now)
            elif job.status == JobStatus.COMPLETED:
                self._finish(run, RunStatus.SUCCEEDED, f"Job {job.job_id} completed.", now)
            elif job.ended:
                why = f": {job.failure.message}" if job.failure else ""
                self._finish(run, RunStatus.FAILED, f"Job {job.job_id} {job.status.lower()}{why}", now)
            else:
                continue
            report.finished += 1

    def _finish(self, run: TaskRun, status: RunStatus, result: str, now: int) -> None:
        ended = self.tasks.finish_run(run.run_id, status, result, now, max_failures=self.max_failures)
        if ended is not None and status == RunStatus.FAILED:
            task = self.tasks.get(run.task_id)
            if task is not None and task.state == TaskState.FAILED:
                log.warning("task %s failed %d times in a row; stopped", task.task_id, self.max_failures)

    # -- queue --------------------------------------------------------------------------------------
    def _start_queued(self, now: int, report: TickReport) -> None:
        open_runs = self.tasks.open_runs()
        busy = {r.task_id for r in open_runs if r.status == RunStatus.EXECUTING}
        for run in open_runs:
            if run.status != RunStatus.SCHEDULED or run.task_id in busy:
                continue
            task = self.tasks.get(run.task_id)
            if task is None or task.state in (TaskState.PAUSED, TaskState.FAILED):
                self.tasks.update_run(
                    run.run_id,
                    now,
                    status=RunStatus.SKIPPED,
                    result="Skipped: the task was disabled while this run waited.",
                    expected=frozenset({RunStatus.SCHEDULED}),
                )
                continue
            claimed = self.tasks.update_run(
                run.run_id, now, status=RunStatus.EXECUTING, expected=frozenset({RunStatus.SCHEDULED})
            )
            if claimed is not None:
                busy.add(run.task_id)
                self._launch(task, claimed, now)
                report.started_from_queue += 1

    # -- firing -------------------------------------------------------------------------------------
    def _fire(self, task: Task, now: int, report: TickReport) -> None:
        occasion = task.next_fire
        open_runs = self.tasks.open_runs(task.task_id)
        running = next((r for r in open_runs if r.status == RunStatus.EXECUTING), None)
        waiting = next((r for r in open_runs if r.status == RunStatus.SCHEDULED), None)
        if running is None and waiting is None:
            status, result = RunStatus.EXECUTING, ""
        elif task.overlap == "queue" and waiting is None:
            status, result = RunStatus.SCHEDULED, f"Queued behind run {running.run_id if running else ''}."
        else:
            other = running or waiting
            status = RunStatus.SKIPPED
            result = f"Skipped: run {other.run_id if other else ''} had not finished."
        if now - occasion > self.misfire_grace_ms:
            result = (
                f"{result} Fired late: the occasion was {_iso(occasion)}, the scheduler ran at {_iso(now)}."
            )
        counted = status != RunStatus.SKIPPED
        following = first_fire(task, now)
        done = following is None or (
            task.max_occurrences > 0 and task.occurrences + counted >= task.max_occurrences
        )
        firing = Firing(
            next_fire=0 if done else following or 0,
            state=TaskState.COMPLETED if done else TaskState.ACTIVE,
            counted=counted,
            run=TaskRun(new_task_id(), task.task_id, occasion, status, now, now, result=result.strip()),
        )
        if not self.tasks.fire(task.task_id, occasion, firing):
            report.lost_races += 1
            return
        if now - occasion > self.misfire_grace_ms:
            report.misfired += 1
        if status == RunStatus.EXECUTING:
            self._launch(task, firing.run, now)
            report.fired += 1
        elif status == RunStatus.SCHEDULED:
            report.queued += 1
        else:
            report.skipped += 1

    def _launch(self, task: Task, run: TaskRun, now: int) -> None:
        try:
            job_id = self.launcher.launch(task, run.run_id)
        except NbJobsError as exc:
            self._finish(run, RunStatus.FAILED, f"The run could not start: {exc.message}", now)
            return
        result = f"{run.result} Job {job_id} submitted.".strip()
        self.tasks.update_run(run.run_id, now, job_id=job_id, result=result)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
