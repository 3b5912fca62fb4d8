"""Scheduled notebook tasks at ``/sharing/rest/community/users/<u>/tasks`` (the portal tasks API)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.models.automation import Task, TaskRun
from nbjobs.service.automation.tasks import TaskSpec
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.params import Params
from nbjobs.web.render import Link, Operation, respond
from nbjobs.web.routing import operation
from nbjobs.web.services import WebServices

router = APIRouter(prefix="/sharing/rest/community/users/{username}/tasks")
TAGS = ("tasks",)
_TASK_FIELDS = (
    "title",
    "type",
    "itemId",
    "parameters",
    "startDate",
    "endDate",
    "minute",
    "hour",
    "dayOfMonth",
    "month",
    "dayOfWeek",
    "maxOccurrences",
    "timeZone",
    "overlapPolicy",
    "notifications",  # nbjobs: notification rules for each run's job (docs/notifications.md)
)
_UPDATE_FIELDS = (*_TASK_FIELDS, "isActive")


def task_view(nb: WebServices, task: Task) -> dict[str, Any]:
    """A task as ArcGIS portals render it, plus nbjobs' ``timeZone``, ``overlapPolicy`` and ``nextStart``."""
    parameters = dict(task.parameters)
    parameters["notebookParameters"] = json.dumps(parameters.get("notebookParameters") or {})
    return {
        "id": task.task_id,
        "itemId": task.item_id,
        "type": task.type,
        "title": task.title,
        "userId": task.owner,
        "cronSchedule": {
            "minute": task.minute,
            "hour": task.hour,
            "dayOfMonth": task.day_of_month,
            "month": task.month,
            "dayOfWeek": task.day_of_week,
        },
        "timeZone": task.time_zone,
        "runIntervalSeconds": nb.tasks.interval_seconds(task),
        "lastStart": task.last_start or None,
        "nextStart": task.next_fire or None,
        "maxOccurrences": task.max_occurrences,
        "occurrences": task.occurrences,
        "consecutiveFailures": task.consecutive_failures,
        "overlapPolicy": task.overlap,
        "parameters": parameters,
        "created": task.created,
        "updated": task.updated,
        "startDate": task.start_date or None,
        "endDate": task.end_date or None,
        "active": task.active,
        "taskState": str(task.state),
        "notifications": [r.to_wire() for r in nb.tasks.notification_rules(task)],
    }


def run_view(nb: WebServices, run: TaskRun, task: Task) -> dict[str, Any]:
    return {
        "runId": run.run_id,
        "taskId": run.task_id,
        "jobId": run.job_id,
        "status": str(run.status),
        "result": run.result,
        "scheduledTime": run.scheduled_for,
        "created": run.created,
        "updated": run.updated,
        "task": task_view(nb, task),
    }


def task_spec(nb: WebServices, params: Params, *, update: bool) -> TaskSpec:
    def text(name: str) -> str | None:
        value = params.values.get(name)
        return None if value is None or (value.strip() == "" and update) else value.strip()

    def date(name: str) -> int | None:
        return params.integer(name, None, minimum=0)

    raw_rules = text("notifications")
    rules = None if raw_rules is None else nb.notifications.parse(raw_rules)
    return TaskSpec(
        title=text("title"),
        type=text("type"),
        item_id=text("itemId"),
        parameters=params.json_object("parameters"),
        start_date=date("startDate"),
        end_date=date("endDate"),
        minute=text("minute"),
        hour=text("hour"),
        day_of_month=text("dayOfMonth"),
        month=text("month"),
        day_of_week=text("dayOfWeek"),
        time_zone=text("timeZone"),
        max_occurrences=params.integer("maxOccurrences", None, minimum=0),
        overlap=text("overlapPolicy"),
        is_active=params.flag("isActive", True) if text("isActive") else None,
        notifications=rules,
    )


@operation(router, "", summary="A user's scheduled tasks", tags=TAGS)
def list_tasks(request: Request, username: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    active = params.flag("active", True) if params.text("active") else None
    found = nb.tasks.list(
        user, username, item_id=params.text("itemId") or None, active=active, types=params.words("types")
    )
    start = params.integer("start", 1, minimum=1) or 1
    num = params.integer("num", 10, minimum=0)
    num = 10 if num is None else min(num, 100)
    page = found[start - 1 : start - 1 + num]
    next_start = start + len(page) if start - 1 + len(page) < len(found) else -1
    body = {
        "total": len(found),
        "start": start,
        "num": len(page),
        "nextStart": next_start,
        "activeTasksAvailable": nb.tasks.active_available(nb.users.get(username).username),
        "tasks": [task_view(nb, t) for t in page],
    }
    return respond(
        request,
        body,
        title=f"Tasks of {username}",
        links=[Link(t.title, t.task_id) for t in page],
        operations=[Operation("createTask", "createTask", _TASK_FIELDS)],
    )


@operation(
    router, "/createTask", summary="Schedule a notebook", methods=("POST",), fields=_TASK_FIELDS, tags=TAGS
)
def create_task(request: Request, username: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    task = nb.tasks.create(user, username, task_spec(nb, params, update=False))
    return respond(request, {"success": True, "taskId": task.task_id}, title="Task created")


@operation(router, "/{task_id}", summary="One task", tags=TAGS)
def get_task(request: Request, username: str, task_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    task = nb.tasks.get(user, username, task_id)
    return respond(
        request,
        task_view(nb, task),
        title=task.title,
        links=[Link("runs", "runs")],
        operations=[
            Operation("update", "update", _UPDATE_FIELDS),
            Operation("enable", "enable"),
            Operation("disable", "disable"),
            Operation("delete", "delete"),
        ],
    )


@operation(
    router, "/{task_id}/update", summary="Change a task", methods=("POST",), fields=_UPDATE_FIELDS, tags=TAGS
)
def update_task(
    request: Request, username: str, task_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    task = nb.tasks.update(user, username, task_id, task_spec(nb, params, update=True))
    return respond(request, {"success": True, "taskId": task.task_id}, title="Task updated")


@operation(router, "/{task_id}/enable", summary="Activate a task", methods=("POST",), tags=TAGS)
def enable_task(
    request: Request, username: str, task_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    nb.tasks.set_active(user, username, task_id, True)
    return respond(request, {"success": True, "taskId": task_id}, title="Task enabled")


@operation(router, "/{task_id}/disable", summary="Pause a task", methods=("POST",), tags=TAGS)
def disable_task(
    request: Request, username: str, task_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    nb.tasks.set_active(user, username, task_id, False)
    return respond(request, {"success": True, "taskId": task_id}, title="Task disabled")


@operation(router, "/{task_id}/delete", summary="Delete a task and its runs", methods=("POST",), tags=TAGS)
def delete_task(
    request: Request, username: str, task_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    nb.tasks.delete(user, username, task_id)
    return respond(request, {"success": True, "taskId": task_id}, title="Task deleted")


@operation(router, "/{task_id}/runs", summary="A task's runs (newest first, at most 30)", tags=TAGS)
def list_runs(
    request: Request, username: str, task_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    task = nb.tasks.get(user, username, task_id)
    runs = nb.tasks.runs(user, username, task_id, limit=params.integer("num", 30, minimum=1) or 30)
    return respond(
        request,
        {"runs": [run_view(nb, r, task) for r in runs]},
        title=f"Runs of {task.title}",
        links=[Link(r.run_id, r.run_id) for r in runs],
    )


@operation(router, "/{task_id}/runs/{run_id}", summary="One run", tags=TAGS)
def get_run(
    request: Request, username: str, task_id: str, run_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    task = nb.tasks.get(user, username, task_id)
    run = nb.tasks.get_run(user, username, task_id, run_id)
    return respond(
        request,
        run_view(nb, run, task),
        title=f"Run {run_id}",
        operations=[Operation("update", "update", ("status", "result")), Operation("delete", "delete")],
    )


@operation(
    router,
    "/{task_id}/runs/{run_id}/update",
    summary="Set a run's status and result",
    methods=("POST",),
    fields=("status", "result"),
    tags=TAGS,
)
def update_run(
    request: Request, username: str, task_id: str, run_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    result = params.values.get("result")
    nb.tasks.update_run(user, username, task_id, run_id, status=params.text("status") or None, result=result)
    return respond(request, {"success": True, "runId": run_id}, title="Run updated")


@operation(router, "/{task_id}/runs/{run_id}/delete", summary="Delete a run", methods=("POST",), tags=TAGS)
def delete_run(
    request: Request, username: str, task_id: str, run_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    nb.tasks.delete_run(user, username, task_id, run_id)
    return respond(request, {"success": True, "runId": run_id}, title="Run deleted")
