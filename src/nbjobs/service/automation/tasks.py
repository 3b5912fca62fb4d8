"""Scheduled notebook tasks (the portal ``community/users/<u>/tasks`` API): validation, ownership, limits.

A user manages their own tasks; an administrator manages anyone's. Others' tasks answer exactly like
unknown ones. Firing runs is the scheduler's job (``service/scheduler.py``).
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import uuid
from dataclasses import dataclass
from typing import Any

from nbjobs.clock import Clock
from nbjobs.errors import (
    InvalidRequest,
    ItemNotFound,
    PermissionDenied,
    RunNotFound,
    TaskLimitReached,
    TaskNotFound,
    UnsupportedTaskType,
)
from nbjobs.models.accounts import User
from nbjobs.models.automation import RunStatus, Task, TaskRun, TaskState
from nbjobs.models.jobs import NO_RETRIES
from nbjobs.models.notifications import Rule
from nbjobs.models.parameters import parse_parameters
from nbjobs.models.portal_stores import TaskStore
from nbjobs.models.retries import FIELDS as RETRY_FIELDS
from nbjobs.models.retries import parse_retry_policy
from nbjobs.service.accounts.users import UserService
from nbjobs.service.authz import SCHEDULE_NOTEBOOKS, may_act_for, owner_scope, require_privilege
from nbjobs.service.automation.cron import CronSchedule
from nbjobs.service.content.items import NOTEBOOK_TYPE, ItemService
from nbjobs.service.notifications.service import NotificationService

EXECUTE_NOTEBOOK = "ExecuteNotebook"
# Task types ArcGIS portals know; only ExecuteNotebook runs here, the others get a clear refusal.
KNOWN_TYPES = (
    EXECUTE_NOTEBOOK,
    "UpdateInsightsWorkbook",
    "ExecuteSceneCook",
    "ExecuteWorkflowManager",
    "ExecuteReport",
    "GPService",
    "RunDataPipeline",
)
OVERLAP_POLICIES = ("skip", "queue")
_PARAMETER_KEYS = (
    "notebookParameters",
    "updatePortalItem",
    "saveInjectedParameters",
    "executionTimeoutInMinutes",
    "notebookRuntimeId",
    *RETRY_FIELDS,  # each run's job retries by this policy
)


def new_task_id() -> str:
    """A fresh task or run id: 32 lowercase hex characters, like portal ids."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class TaskSpec:
    """What createTask and update carry. None: the current value (update) or the default (create)."""

    title: str | None = None
    type: str | None = None
    item_id: str | None = None
    parameters: dict[str, Any] | None = None
    start_date: int | None = None
    end_date: int | None = None
    minute: str | None = None
    hour: str | None = None
    day_of_month: str | None = None
    month: str | None = None
    day_of_week: str | None = None
    time_zone: str | None = None
    max_occurrences: int | None = None
    overlap: str | None = None
    is_active: bool | None = None
    notifications: tuple[Rule, ...] | None = None  # parsed at the edge; copied to each run's job


def schedule_of(task: Task) -> CronSchedule:
    """The task's parsed schedule."""
    return CronSchedule.parse(
        task.minute, task.hour, task.day_of_month, task.month, task.day_of_week, task.time_zone
    )


def first_fire(task: Task, now: int) -> int | None:
    """The task's next occasion from ``now``, within its start and end dates; None if there is none."""
    after = max(now, task.start_date - 1)
    return schedule_of(task).next_after(after, until_ms=task.end_date or None)


def next_occasions(task: Task, now: int, count: int = 5) -> list[int]:
    """The task's next ``count`` occasions as the scheduler fires them: its stored ``next_fire`` (else
    ``first_fire`` from ``now``), then ``first_fire`` from each one, within its end date and what is left
    of ``maxOccurrences``. None for a task that is not active."""
    if task.state != TaskState.ACTIVE:
        return []
    if task.max_occurrences:
        count = min(count, max(0, task.max_occurrences - task.occurrences))
    out: list[int] = []
    fire = task.next_fire or first_fire(task, now)
    while fire is not None and len(out) < count:
        out.append(fire)
        fire = first_fire(task, fire)
    return out


def normalize_parameters(raw: dict[str, Any] | None) -> dict[str, Any]:
    """The task's ``parameters`` with ``notebookParameters`` as an object (clients send it as JSON text
    or as an object); InvalidRequest/InvalidParameters for anything a run could not use."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(_PARAMETER_KEYS))
    if unknown:
        raise InvalidRequest(
            f"Unknown task parameters {', '.join(unknown)}: use {', '.join(_PARAMETER_KEYS)}."
        )
    notebook = raw.get("notebookParameters") or {}
    if isinstance(notebook, str):
        try:
            notebook = json.loads(notebook) if notebook.strip() else {}
        except RecursionError:
            raise InvalidRequest("notebookParameters is nested too deeply.") from None
        except ValueError:
            raise InvalidRequest("notebookParameters must be a JSON object; it is not valid JSON.") from None
    out: dict[str, Any] = {
        "updatePortalItem": _bool(raw, "updatePortalItem", True),
        "saveInjectedParameters": _bool(raw, "saveInjectedParameters", False),
        "notebookParameters": parse_parameters(notebook).to_wire(),
    }
    timeout = raw.get("executionTimeoutInMinutes")
    if timeout is not None:
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
            raise InvalidRequest("executionTimeoutInMinutes must be 0 or a positive number of minutes.")
        out["executionTimeoutInMinutes"] = timeout
    if raw.get("notebookRuntimeId"):
        out["notebookRuntimeId"] = str(raw["notebookRuntimeId"])
    retry = parse_retry_policy(raw)
    if retry != NO_RETRIES:
        out.update(retry.to_wire())
    return out


def _bool(raw: dict[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false.")
    return value


def _draft(owner: str, now: int) -> Task:
    """A new task of ``owner`` with every default, before createTask's fields are applied."""
    return Task(
        task_id=new_task_id(),
        owner=owner,
        item_id="",
        type=EXECUTE_NOTEBOOK,
        title="",
        minute="*",
        hour="*",
        day_of_month="*",
        month="*",
        day_of_week="?",
        time_zone="UTC",
        parameters=normalize_parameters(None),
        start_date=0,
        end_date=0,
        max_occurrences=0,
        overlap="skip",
        state=TaskState.ACTIVE,
        created=now,
        updated=now,
    )


class TaskService:
    """Create, read, change and delete tasks and their runs, for their owner or an administrator."""

    def __init__(
        self,
        store: TaskStore,
        items: ItemService,
        users: UserService,
        clock: Clock,
        *,
        max_active: int = 20,
        notifications: NotificationService | None = None,
    ) -> None:
        self.notifications = notifications  # None: tasks keep no notification rules (tests of other parts)
        self.store = store
        self.items = items
        self.users = users
        self.clock = clock
        self.max_active = max_active

    # -- tasks --------------------------------------------------------------------------------------
    def create(self, caller: User, owner: str, spec: TaskSpec) -> Task:
        """A new task of ``owner``, active unless ``spec.is_active`` is false, scheduled from now."""
        user = self._owner(caller, owner)
        require_privilege(user, SCHEDULE_NOTEBOOKS)
        now = self.clock()
        draft = _draft(user.username, now)
        if spec.item_id is None:
            raise InvalidRequest("itemId is required.")
        if spec.type is None:
            raise InvalidRequest(f"type is required: use '{EXECUTE_NOTEBOOK}'.")
        task = self._apply(user, draft, spec, now, was_active=False)
        self.store.add(task)
        self._keep_rules(task, spec)
        return task

    def preview(self, spec: TaskSpec, base: Task | None = None, count: int = 5) -> list[int]:
        """The first ``count`` occasions the schedule of ``spec`` would have if ``base`` (a task the
        caller may read; None: a new task) were saved with it now and active: ``next_occasions`` of that
        draft. InvalidRequest for a malformed schedule or dates, as create and update answer."""
        now = self.clock()
        changes: dict[str, Any] = {"next_fire": 0, "state": TaskState.ACTIVE}
        for name in ("minute", "hour", "day_of_month", "month", "day_of_week", "time_zone"):
            value = getattr(spec, name)
            if value is not None and value.strip():
                changes[name] = value.strip()
        for name in ("start_date", "end_date", "max_occurrences"):
            if getattr(spec, name) is not None:
                changes[name] = getattr(spec, name)
        draft = dataclasses.replace(base or _draft("", now), **changes)
        schedule_of(draft)
        _check_dates(draft)
        return next_occasions(draft, now, count)

    def find(self, caller: User, task_id: str) -> Task:
        """The task of that id, whoever owns it, if ``caller`` may see it (its owner, or an admin); else
        TaskNotFound, as for an unknown id."""
        task = self.store.get(task_id)
        if task is None or not may_act_for(caller.principal(), task.owner):
            raise TaskNotFound(task_id)
        return task

    def visible(self, caller: User) -> builtins.list[Task]:
        """The caller's tasks, or everyone's for an administrator, oldest first."""
        return self.store.list(owner_scope(caller.principal()))

    def get(self, caller: User, owner: str, task_id: str) -> Task:
        """The task if ``caller`` may see it (its owner, or an admin), else TaskNotFound."""
        self._owner(caller, owner)
        task = self.store.get(task_id)
        if task is None or task.owner.lower() != owner.lower():
            raise TaskNotFound(task_id)
        return task

    def list(
        self,
        caller: User,
        owner: str,
        *,
        item_id: str | None = None,
        active: bool | None = None,
        types: tuple[str, ...] | None = None,
    ) -> list[Task]:
        """``owner``'s tasks, oldest first, filtered by item, active flag and types."""
        user = self._owner(caller, owner)
        states = None if active is None else (
            frozenset({TaskState.ACTIVE}) if active else frozenset(set(TaskState) - {TaskState.ACTIVE})
        )  # fmt: skip
        found = self.store.list(user.username, item_id=item_id or None, states=states)
        if types:
            wanted = {t.lower() for t in types}
            found = [t for t in found if t.type.lower() in wanted]
        return found

    def update(self, caller: User, owner: str, task_id: str, spec: TaskSpec) -> Task:
        """Change a task; the new schedule applies from its next occasion."""
        task = self.get(caller, owner, task_id)
        user = self.users.get(task.owner)
        require_privilege(user, SCHEDULE_NOTEBOOKS)
        updated = self._apply(user, task, spec, self.clock(), was_active=task.active)
        self.store.save(updated)
        self._keep_rules(updated, spec)
        return updated

    def set_active(self, caller: User, owner: str, task_id: str, active: bool) -> Task:
        """Enable (schedule from now, failure count reset) or disable (pause) a task."""
        return self.update(caller, owner, task_id, TaskSpec(is_active=active))

    def delete(self, caller: User, owner: str, task_id: str) -> None:
        """Delete a task and its run history (jobs it started stay)."""
        task = self.get(caller, owner, task_id)
        self.store.delete(task.task_id)
        if self.notifications is not None:
            self.notifications.set_scope_rules(f"task:{task.task_id}", ())

    def notification_rules(self, task: Task) -> tuple[Rule, ...]:
        """The rules each run's job gets (of a task the caller was allowed to read)."""
        return self.notifications.scope_rules(f"task:{task.task_id}") if self.notifications else ()

    def _keep_rules(self, task: Task, spec: TaskSpec) -> None:
        if self.notifications is not None and spec.notifications is not None:
            self.notifications.set_scope_rules(f"task:{task.task_id}", spec.notifications)

    def active_available(self, owner: str) -> int:
        """How many more active tasks ``owner`` may have (ArcGIS ``activeTasksAvailable``)."""
        return max(0, self.max_active - self.store.count_active(owner))

    def interval_seconds(self, task: Task) -> int:
        """ArcGIS ``runIntervalSeconds``: the gap between the next two occasions."""
        return schedule_of(task).interval_seconds(max(self.clock(), task.start_date - 1))

    # -- runs ---------------------------------------------------------------------------------------
    def runs(self, caller: User, owner: str, task_id: str, limit: int = 30) -> builtins.list[TaskRun]:
        """The task's runs, newest first (ArcGIS returns at most 30)."""
        task = self.get(caller, owner, task_id)
        return self.store.runs(task.task_id, limit)

    def get_run(self, caller: User, owner: str, task_id: str, run_id: str) -> TaskRun:
        task = self.get(caller, owner, task_id)
        run = self.store.get_run(run_id)
        if run is None or run.task_id != task.task_id:
            raise RunNotFound(run_id)
        return run

    def update_run(
        self, caller: User, owner: str, task_id: str, run_id: str, *, status: str | None, result: str | None
    ) -> TaskRun:
        """Set a run's status word and result text (as ArcGIS allows the task's owner to)."""
        run = self.get_run(caller, owner, task_id, run_id)
        new_status = None
        if status:
            try:
                new_status = RunStatus(status.lower())
            except ValueError:
                words = ", ".join(s.value for s in RunStatus)
                raise InvalidRequest(f"Invalid run status {status!r}: use one of {words}.") from None
        changed = self.store.update_run(run.run_id, self.clock(), status=new_status, result=result)
        if changed is None:
            raise RunNotFound(run_id)
        return changed

    def delete_run(self, caller: User, owner: str, task_id: str, run_id: str) -> None:
        run = self.get_run(caller, owner, task_id, run_id)
        self.store.delete_run(run.run_id)

    # -- rules --------------------------------------------------------------------------------------
    def _owner(self, caller: User, owner: str) -> User:
        if not may_act_for(caller.principal(), owner):
            raise PermissionDenied("You do not have permissions to access this user's tasks.")
        return self.users.get(owner)

    def _apply(self, user: User, task: Task, spec: TaskSpec, now: int, *, was_active: bool) -> Task:
        """``task`` changed by ``spec`` and checked as a whole, with its next occasion computed."""
        _check_type(spec.type if spec.type is not None else task.type)
        changes: dict[str, Any] = {"updated": now}
        for name in ("minute", "hour", "day_of_month", "month", "day_of_week", "time_zone"):
            value = getattr(spec, name)
            if value is not None and value.strip():
                changes[name] = value.strip()
        for name in ("title", "start_date", "end_date", "max_occurrences"):
            value = getattr(spec, name)
            if value is not None:
                changes[name] = value
        if spec.type is not None:
            changes["type"] = spec.type
        if spec.parameters is not None:
            changes["parameters"] = normalize_parameters(spec.parameters)
        if spec.overlap is not None:
            if spec.overlap not in OVERLAP_POLICIES:
                raise InvalidRequest(f"Invalid overlapPolicy {spec.overlap!r}: use skip or queue.")
            changes["overlap"] = spec.overlap
        if spec.item_id is not None:
            changes["item_id"] = self._notebook_item(user, spec.item_id)
        changed = dataclasses.replace(task, **changes)
        if not changed.title:
            changed = dataclasses.replace(changed, title=f"Run notebook {changed.item_id}")
        schedule_of(changed)  # malformed fields answer InvalidRequest before anything is stored
        _check_dates(changed)
        if changed.max_occurrences < 0:
            raise InvalidRequest("maxOccurrences must be 0 (no limit) or a positive number.")
        active = spec.is_active if spec.is_active is not None else task.state == TaskState.ACTIVE
        if not active:
            return dataclasses.replace(changed, state=TaskState.PAUSED, next_fire=0)
        if not was_active and self.store.count_active(user.username) >= self.max_active:
            raise TaskLimitReached(
                f"You have reached the maximum number of active tasks ({self.max_active}); "
                "disable or delete one first."
            )
        if changed.max_occurrences and changed.occurrences >= changed.max_occurrences:
            raise InvalidRequest(
                f"The task has already run {changed.occurrences} times (maxOccurrences "
                f"{changed.max_occurrences}); raise maxOccurrences to schedule it again."
            )
        if changed.end_date and changed.end_date < now:
            raise InvalidRequest(f"endDate ({changed.end_date}) is in the past; the task would never run.")
        fire = first_fire(changed, now)
        if fire is None:
            raise InvalidRequest("The schedule has no occasion between now (or startDate) and endDate.")
        consecutive = 0 if task.state != TaskState.ACTIVE else changed.consecutive_failures
        return dataclasses.replace(
            changed, state=TaskState.ACTIVE, next_fire=fire, consecutive_failures=consecutive
        )

    def _notebook_item(self, user: User, item_id: str) -> str:
        item = self.items.get(user.principal(), item_id.strip())
        if item.owner.lower() != user.username.lower():
            raise ItemNotFound(item_id)  # a task runs its owner's own notebook
        if item.type != NOTEBOOK_TYPE:
            raise InvalidRequest(
                f"Item {item_id} is a {item.type!r} item; ExecuteNotebook tasks need a Notebook item."
            )
        return item.item_id


def _check_type(task_type: str) -> None:
    if task_type == EXECUTE_NOTEBOOK:
        return
    if task_type in KNOWN_TYPES:
        raise UnsupportedTaskType(
            f"Unsupported task type {task_type!r}: this server runs only '{EXECUTE_NOTEBOOK}' tasks."
        )
    raise UnsupportedTaskType(
        f"Unsupported task type {task_type!r}: use '{EXECUTE_NOTEBOOK}' "
        f"(ArcGIS types are {', '.join(KNOWN_TYPES)})."
    )


MAX_DATE_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant a schedule can compute


def _check_dates(task: Task) -> None:
    if task.start_date < 0 or task.end_date < 0:
        raise InvalidRequest("startDate and endDate are epoch milliseconds and cannot be negative.")
    if task.start_date > MAX_DATE_MS or task.end_date > MAX_DATE_MS:
        raise InvalidRequest(f"startDate and endDate are epoch milliseconds up to {MAX_DATE_MS} (year 9999).")
    if task.end_date and task.start_date and task.start_date > task.end_date:
        raise InvalidRequest(
            f"startDate ({task.start_date}) is after endDate ({task.end_date}); the task would never run."
        )
