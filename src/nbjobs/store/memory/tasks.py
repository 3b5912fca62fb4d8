"""In-memory task store: the fake unit tests use in place of the SQL one (store/tasks.py).

It keeps the SQL store's guarantees that matter to callers: ``fire`` is a compare-and-set on the task's
next fire time plus a unique (task, occasion) key, and run changes are conditional on the run's status.
Tasks are copied in and out, as rows are, so no caller shares a ``parameters`` dict with the store.
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
import threading
from typing import Any

from nbjobs.models.automation import OPEN_RUNS, Firing, RunStatus, Task, TaskRun, TaskState
from nbjobs.store.memory.shared import refuse_taken

_KEPT_BY_SAVE = ("occurrences", "last_start", "created")  # what SqlTaskStore.save does not write


class MemoryTaskStore:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._runs: dict[str, TaskRun] = {}
        self._lock = threading.Lock()

    def add(self, task: Task) -> None:
        with self._lock:
            refuse_taken(task.task_id, self._tasks)
            self._tasks[task.task_id] = copy.deepcopy(task)

    def get(self, task_id: str) -> Task | None:
        return copy.deepcopy(self._tasks.get(task_id))

    def save(self, task: Task) -> None:
        with self._lock:
            current = self._tasks.get(task.task_id)
            if current is not None:
                kept = {name: getattr(current, name) for name in _KEPT_BY_SAVE}
                self._tasks[task.task_id] = copy.deepcopy(dataclasses.replace(task, **kept))

    def delete(self, task_id: str) -> bool:
        with self._lock:
            self._runs = {k: r for k, r in self._runs.items() if r.task_id != task_id}
            return self._tasks.pop(task_id, None) is not None

    def list(
        self,
        owner: str | None = None,
        *,
        item_id: str | None = None,
        states: frozenset[TaskState] | None = None,
    ) -> builtins.list[Task]:
        found = [
            t
            for t in self._tasks.values()
            if (owner is None or t.owner == owner)
            and (item_id is None or t.item_id == item_id)
            and (states is None or t.state in states)
        ]
        return copy.deepcopy(sorted(found, key=lambda t: (t.created, t.task_id)))

    def count_active(self, owner: str) -> int:
        return sum(1 for t in self._tasks.values() if t.owner == owner and t.state == TaskState.ACTIVE)

    def due(self, now: int, limit: int = 100) -> builtins.list[Task]:
        found = [t for t in self._tasks.values() if t.active and 0 < t.next_fire <= now]
        return copy.deepcopy(sorted(found, key=lambda t: (t.next_fire, t.task_id))[:limit])

    def fire(self, task_id: str, expected_next_fire: int, firing: Firing) -> bool:
        run = firing.run
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.next_fire != expected_next_fire or not task.active:
                return False
            if run.run_id in self._runs or any(
                r.task_id == task_id and r.scheduled_for == run.scheduled_for for r in self._runs.values()
            ):
                return False  # SQL: the run's insert breaks a key and the advance is rolled back
            self._tasks[task_id] = dataclasses.replace(
                task,
                next_fire=firing.next_fire,
                state=firing.state,
                occurrences=task.occurrences + (1 if firing.counted else 0),
                last_start=run.created if firing.counted else task.last_start,
                updated=run.created,
            )
            self._runs[run.run_id] = run
        return True

    def runs(self, task_id: str, limit: int = 30) -> builtins.list[TaskRun]:
        mine = [r for r in self._runs.values() if r.task_id == task_id]
        return sorted(mine, key=lambda r: (-r.scheduled_for, r.run_id))[:limit]

    def get_run(self, run_id: str) -> TaskRun | None:
        return self._runs.get(run_id)

    def open_runs(self, task_id: str | None = None, limit: int = 500) -> builtins.list[TaskRun]:
        found = [r for r in self._runs.values() if r.status in OPEN_RUNS and task_id in (None, r.task_id)]
        return sorted(found, key=lambda r: (r.scheduled_for, r.run_id))[:limit]

    def update_run(
        self,
        run_id: str,
        now: int,
        *,
        status: RunStatus | None = None,
        result: str | None = None,
        job_id: str | None = None,
        expected: frozenset[RunStatus] | None = None,
    ) -> TaskRun | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or (expected is not None and run.status not in expected):
                return None
            changes: dict[str, Any] = {"status": status, "result": result, "job_id": job_id}
            run = dataclasses.replace(run, updated=now, **{k: v for k, v in changes.items() if v is not None})
            self._runs[run_id] = run
            return run

    def finish_run(
        self, run_id: str, status: RunStatus, result: str, now: int, *, max_failures: int
    ) -> TaskRun | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.status not in OPEN_RUNS:
                return None
            run = dataclasses.replace(run, status=status, result=result, updated=now)
            self._runs[run_id] = run
            task = self._tasks.get(run.task_id)
            if task is not None:
                if status != RunStatus.FAILED:
                    task = dataclasses.replace(task, consecutive_failures=0, updated=now)
                else:
                    streak = task.consecutive_failures + 1
                    give_up = streak >= max_failures and task.active
                    task = dataclasses.replace(
                        task,
                        consecutive_failures=streak,
                        state=TaskState.FAILED if give_up else task.state,
                        next_fire=0 if give_up else task.next_fire,
                        updated=now,
                    )
                self._tasks[task.task_id] = task
            return run

    def delete_run(self, run_id: str) -> bool:
        with self._lock:
            return self._runs.pop(run_id, None) is not None
