"""Scheduled tasks and their runs: the SQL TaskStore (records in models/automation.py, protocol in
models/stores.py, models/portal_stores.py).

The occasion key is (task_id, scheduled_for): ``fire`` advances the task's ``next_fire`` by compare-and-set
and inserts the run in one transaction, and the unique key refuses a second run for the same occasion, so
any number of schedulers can tick at once and each occasion fires once.
"""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import Engine, Update, and_, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nbjobs.models.automation import OPEN_RUNS, Firing, RunStatus, Task, TaskRun, TaskState
from nbjobs.store.tables import task_runs, tasks


def _task_from_row(row: Any) -> Task:
    m = row._mapping
    return Task(
        task_id=m["task_id"],
        owner=m["owner"],
        item_id=m["item_id"],
        type=m["type"],
        title=m["title"],
        minute=m["minute"],
        hour=m["hour"],
        day_of_month=m["day_of_month"],
        month=m["month"],
        day_of_week=m["day_of_week"],
        time_zone=m["time_zone"],
        parameters=m["parameters"] or {},
        start_date=m["start_date"],
        end_date=m["end_date"],
        max_occurrences=m["max_occurrences"],
        overlap=m["overlap"],
        state=TaskState(m["state"]),
        created=m["created"],
        updated=m["updated"],
        occurrences=m["occurrences"],
        consecutive_failures=m["consecutive_failures"],
        next_fire=m["next_fire"],
        last_start=m["last_start"],
    )


_DEFINITION = (
    "owner",
    "item_id",
    "type",
    "title",
    "minute",
    "hour",
    "day_of_month",
    "month",
    "day_of_week",
    "time_zone",
    "parameters",
    "start_date",
    "end_date",
    "max_occurrences",
    "overlap",
    "state",
    "next_fire",
    "consecutive_failures",
    "updated",
)


def _task_row(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "owner": task.owner,
        "item_id": task.item_id,
        "type": task.type,
        "title": task.title,
        "minute": task.minute,
        "hour": task.hour,
        "day_of_month": task.day_of_month,
        "month": task.month,
        "day_of_week": task.day_of_week,
        "time_zone": task.time_zone,
        "parameters": task.parameters,
        "start_date": task.start_date,
        "end_date": task.end_date,
        "max_occurrences": task.max_occurrences,
        "overlap": task.overlap,
        "state": str(task.state),
        "occurrences": task.occurrences,
        "consecutive_failures": task.consecutive_failures,
        "next_fire": task.next_fire,
        "last_start": task.last_start,
        "created": task.created,
        "updated": task.updated,
    }


def _run_from_row(row: Any) -> TaskRun:
    m = row._mapping
    return TaskRun(
        run_id=m["run_id"],
        task_id=m["task_id"],
        scheduled_for=m["scheduled_for"],
        status=RunStatus(m["status"]),
        created=m["created"],
        updated=m["updated"],
        result=m["result"],
        job_id=m["job_id"],
    )


def _run_row(run: TaskRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "task_id": run.task_id,
        "scheduled_for": run.scheduled_for,
        "status": str(run.status),
        "result": run.result,
        "job_id": run.job_id,
        "created": run.created,
        "updated": run.updated,
    }


class SqlTaskStore:
    """TaskStore over SQLAlchemy Core; each method is one short transaction that starts with a write
    when it writes at all, so SQLite never upgrades a read lock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, task: Task) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(tasks).values(**_task_row(task)))

    def get(self, task_id: str) -> Task | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tasks).where(tasks.c.task_id == task_id)).first()
        return _task_from_row(row) if row else None

    def save(self, task: Task) -> None:
        row = _task_row(task)
        values = {k: row[k] for k in _DEFINITION}
        with self.engine.begin() as conn:
            conn.execute(update(tasks).where(tasks.c.task_id == task.task_id).values(**values))

    def delete(self, task_id: str) -> bool:
        with self.engine.begin() as conn:
            conn.execute(delete(task_runs).where(task_runs.c.task_id == task_id))
            return conn.execute(delete(tasks).where(tasks.c.task_id == task_id)).rowcount == 1

    def list(
        self,
        owner: str | None = None,
        *,
        item_id: str | None = None,
        states: frozenset[TaskState] | None = None,
    ) -> builtins.list[Task]:
        stmt = select(tasks).order_by(tasks.c.created, tasks.c.task_id)
        if owner is not None:
            stmt = stmt.where(tasks.c.owner == owner)
        if item_id is not None:
            stmt = stmt.where(tasks.c.item_id == item_id)
        if states is not None:
            stmt = stmt.where(tasks.c.state.in_([str(s) for s in states]))
        with self.engine.connect() as conn:
            return [_task_from_row(r) for r in conn.execute(stmt)]

    def count_active(self, owner: str) -> int:
        stmt = (
            select(func.count())
            .select_from(tasks)
            .where(tasks.c.owner == owner, tasks.c.state == str(TaskState.ACTIVE))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def due(self, now: int, limit: int = 100) -> builtins.list[Task]:
        stmt = (
            select(tasks)
            .where(tasks.c.state == str(TaskState.ACTIVE), tasks.c.next_fire > 0, tasks.c.next_fire <= now)
            .order_by(tasks.c.next_fire, tasks.c.task_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_task_from_row(r) for r in conn.execute(stmt)]

    def fire(self, task_id: str, expected_next_fire: int, firing: Firing) -> bool:
        run = firing.run
        advance = (
            update(tasks)
            .where(
                tasks.c.task_id == task_id,
                tasks.c.next_fire == expected_next_fire,
                tasks.c.state == str(TaskState.ACTIVE),
            )
            .values(
                next_fire=firing.next_fire,
                state=str(firing.state),
                occurrences=tasks.c.occurrences + (1 if firing.counted else 0),
                last_start=run.created if firing.counted else tasks.c.last_start,
                updated=run.created,
            )
        )
        try:
            with self.engine.begin() as conn:
                if conn.execute(advance).rowcount != 1:
                    return False
                conn.execute(insert(task_runs).values(**_run_row(run)))
        except IntegrityError:
            return False  # the occasion already has its run: rolled back, the other scheduler won
        return True

    def runs(self, task_id: str, limit: int = 30) -> builtins.list[TaskRun]:
        stmt = (
            select(task_runs)
            .where(task_runs.c.task_id == task_id)
            .order_by(task_runs.c.scheduled_for.desc(), task_runs.c.run_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_run_from_row(r) for r in conn.execute(stmt)]

    def get_run(self, run_id: str) -> TaskRun | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(task_runs).where(task_runs.c.run_id == run_id)).first()
        return _run_from_row(row) if row else None

    def open_runs(self, task_id: str | None = None, limit: int = 500) -> builtins.list[TaskRun]:
        stmt = (
            select(task_runs)
            .where(task_runs.c.status.in_([str(s) for s in OPEN_RUNS]))
            .order_by(task_runs.c.scheduled_for, task_runs.c.run_id)
            .limit(limit)
        )
        if task_id is not None:
            stmt = stmt.where(task_runs.c.task_id == task_id)
        with self.engine.connect() as conn:
            return [_run_from_row(r) for r in conn.execute(stmt)]

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
        values: dict[str, Any] = {"updated": now}
        if status is not None:
            values["status"] = str(status)
        if result is not None:
            values["result"] = result
        if job_id is not None:
            values["job_id"] = job_id
        stmt = update(task_runs).where(task_runs.c.run_id == run_id)
        if expected is not None:
            stmt = stmt.where(task_runs.c.status.in_([str(s) for s in expected]))
        with self.engine.begin() as conn:
            row = conn.execute(stmt.values(**values).returning(*task_runs.c)).first()
        return _run_from_row(row) if row else None

    def finish_run(
        self, run_id: str, status: RunStatus, result: str, now: int, *, max_failures: int
    ) -> TaskRun | None:
        end = (
            update(task_runs)
            .where(task_runs.c.run_id == run_id, task_runs.c.status.in_([str(s) for s in OPEN_RUNS]))
            .values(status=str(status), result=result, updated=now)
            .returning(*task_runs.c)
        )
        with self.engine.begin() as conn:
            row = conn.execute(end).first()
            if row is None:
                return None
            run = _run_from_row(row)
            conn.execute(_count_outcome(run.task_id, status == RunStatus.FAILED, max_failures, now))
        return run

    def delete_run(self, run_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(task_runs).where(task_runs.c.run_id == run_id)).rowcount == 1


def _count_outcome(task_id: str, failed: bool, max_failures: int, now: int) -> Update:
    stmt = update(tasks).where(tasks.c.task_id == task_id)
    if not failed:
        return stmt.values(consecutive_failures=0, updated=now)
    streak = tasks.c.consecutive_failures + 1
    give_up = and_(streak >= max_failures, tasks.c.state == str(TaskState.ACTIVE))
    return stmt.values(
        consecutive_failures=streak,
        state=case((give_up, str(TaskState.FAILED)), else_=tasks.c.state),
        next_fire=case((give_up, 0), else_=tasks.c.next_fire),
        updated=now,
    )
