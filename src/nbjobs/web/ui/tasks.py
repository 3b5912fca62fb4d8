"""The app's tasks pages: the caller's scheduled tasks (everyone's for an administrator), a task with its
next runs and run history, and the create and edit form with its cron builder.

The builder's inputs ("every N minutes", "daily at HH:MM", ...) are composed into the five ArcGIS cron
fields here, on the server, on every POST and for every preview; the page's script only asks the preview
route again as the inputs change. The fields then go through the tasks API's own parsing
(``web/routes/tasks.py``) into ``TaskService``; the next runs are ``TaskService.preview`` and
``next_occasions``: the scheduler's ``first_fire``, from the same ``CronSchedule``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nbjobs.errors import InvalidRequest, NbJobsError, PermissionDenied
from nbjobs.models.accounts import User
from nbjobs.models.automation import Task, TaskRun
from nbjobs.service.automation.cron import zone_of
from nbjobs.service.automation.tasks import EXECUTE_NOTEBOOK, TaskSpec, next_occasions
from nbjobs.web.deps import Form, Nb
from nbjobs.web.params import Params
from nbjobs.web.routes.tasks import task_spec as api_task_spec
from nbjobs.web.ui.forms import as_text, kind_of, notebook_defaults
from nbjobs.web.ui.notebooks import notebook_items
from nbjobs.web.ui.pages import APP_HEADERS, base, page, redirect, render
from nbjobs.web.ui.session import Visit, Visitor

router = APIRouter(include_in_schema=False)  # included by routes.py under /app
PREVIEW_COUNT = 5
REPEATS = {
    "minutes": "Every N minutes",
    "hourly": "Every hour",
    "daily": "Every day",
    "weekly": "Every week",
    "monthly": "Every month",
    "custom": "Custom cron expression",
}
DAYS = (("MON", "Monday"), ("TUE", "Tuesday"), ("WED", "Wednesday"), ("THU", "Thursday"),
        ("FRI", "Friday"), ("SAT", "Saturday"), ("SUN", "Sunday"))  # fmt: skip
DAY_PREFIX = "day."  # the weekly checkbox of day MON: "day.MON"
CRON_FIELDS = "minute hour dayOfMonth month dayOfWeek"
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::00)?")
_ANY_DAY = ("*", "?")


# -- the cron builder ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Builder:
    """The schedule inputs of the form, as text (what was submitted, or a stored task read back)."""

    repeat: str = "daily"
    every: str = "15"
    at_minute: str = "0"
    at_time: str = "09:00"
    days: tuple[str, ...] = ("MON",)
    day: str = "1"
    cron: str = ""
    time_zone: str = "UTC"

    def fields(self) -> tuple[str, str, str, str, str]:
        """The five cron fields these inputs mean; InvalidRequest naming the input that is wrong."""
        if self.repeat == "minutes":
            n = _whole(self.every, "The number of minutes between runs", 1, 59)
            return (f"*/{n}", "*", "*", "*", "?")
        if self.repeat == "hourly":
            return (str(_whole(self.at_minute, "The minute of the hour", 0, 59)), "*", "*", "*", "?")
        if self.repeat == "custom":
            parts = self.cron.split()
            if len(parts) != 5:
                raise InvalidRequest(
                    f"A cron expression has five fields, {CRON_FIELDS} (such as '30 9 * * ?'), "
                    f"not {len(parts)}."
                )
            return parts[0], parts[1], parts[2], parts[3], parts[4]
        hour, minute = _clock_time(self.at_time)
        if self.repeat == "daily":
            return (minute, hour, "*", "*", "?")
        if self.repeat == "weekly":
            if not self.days:
                raise InvalidRequest("Choose at least one day of the week.")
            return (minute, hour, "?", "*", ",".join(d for d, _ in DAYS if d in self.days))
        if self.repeat == "monthly":
            return (minute, hour, str(_whole(self.day, "The day of the month", 1, 31)), "*", "?")
        raise InvalidRequest(f"Choose how often the task runs ({', '.join(REPEATS)}), not {self.repeat!r}.")

    def composed(self) -> Builder:
        """These inputs with ``cron`` set to the expression they compose."""
        return dataclasses.replace(self, cron=" ".join(self.fields()))


def _whole(text: str, label: str, lo: int, hi: int) -> int:
    text = text.strip()
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise InvalidRequest(f"{label} must be a whole number from {lo} to {hi}, not {text!r}.")
    return int(text)


def _clock_time(text: str) -> tuple[str, str]:
    found = _TIME.fullmatch(text.strip())
    if not found or int(found[1]) > 23 or int(found[2]) > 59:
        raise InvalidRequest(
            f"The time must be HH:MM on a 24-hour clock, such as 09:30, not {text.strip()!r}."
        )
    return str(int(found[1])), str(int(found[2]))


def builder_of(values: dict[str, str]) -> Builder:
    """The builder's inputs as submitted (a form or the preview's query)."""
    days = tuple(d for d, _ in DAYS if values.get(DAY_PREFIX + d, "") in ("true", "on"))
    cron = " ".join(values.get("cron", "").split())
    return Builder(
        repeat=values.get("repeat", "").strip() or ("custom" if cron else "daily"),
        every=values.get("every", "15"), at_minute=values.get("atMinute", "0"),
        at_time=values.get("atTime", "09:00"), days=days, day=values.get("dayOfMonth", "1"), cron=cron,
        time_zone=values.get("timeZone", "").strip() or "UTC",
    )  # fmt: skip


def builder_from_task(task: Task) -> Builder:
    """The inputs that compose ``task``'s schedule: a builder choice when one does, else custom."""
    minute, hour, dom, month, dow = task.minute, task.hour, task.day_of_month, task.month, task.day_of_week
    cron = " ".join((minute, hour, dom, month, dow))
    plain = Builder(cron=cron, time_zone=task.time_zone, repeat="custom")
    if month != "*":
        return plain
    at = f"{int(hour):02d}:{int(minute):02d}" if hour.isdigit() and minute.isdigit() else ""
    candidates = [
        Builder(repeat="minutes", every=minute.removeprefix("*/") if minute != "*" else "1"),
        Builder(repeat="hourly", at_minute=minute),
    ]
    if at:
        candidates += [
            Builder(repeat="daily", at_time=at),
            Builder(repeat="weekly", at_time=at, days=tuple(d for d in dow.upper().split(",") if d)),
            Builder(repeat="monthly", at_time=at, day=dom),
        ]
    for candidate in candidates:
        try:
            if " ".join(candidate.fields()) == cron:
                return dataclasses.replace(candidate, cron=cron, time_zone=task.time_zone)
        except InvalidRequest:
            continue
    return plain


def describe(builder: Builder) -> str:
    """The schedule in words (of a builder whose ``fields()`` are valid)."""
    b = builder
    if b.repeat == "minutes":
        n = int(b.every)
        return "Every minute" if n == 1 else f"Every {n} minutes"
    if b.repeat == "hourly":
        return f"Every hour at minute {int(b.at_minute)}"
    if b.repeat == "custom":
        return "Custom schedule"
    hour, minute = _clock_time(b.at_time)
    at = f"{int(hour):02d}:{int(minute):02d}"
    if b.repeat == "daily":
        return f"Every day at {at}"
    if b.repeat == "weekly":
        names = [name for d, name in DAYS if d in b.days]
        return f"Every {', '.join(names)} at {at}"
    return f"Every month on day {int(b.day)} at {at}"


def _spec_of(builder: Builder) -> TaskSpec:
    minute, hour, dom, month, dow = builder.fields()
    return TaskSpec(minute=minute, hour=hour, day_of_month=dom, month=month, day_of_week=dow,
                    time_zone=builder.time_zone)  # fmt: skip


def zone_time(ms: int, time_zone: str) -> str:
    """An epoch-ms time as wall-clock text in ``time_zone``: "Mon 2025-06-02 09:30 CEST"."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).astimezone(zone_of(time_zone))
    return moment.strftime("%a %Y-%m-%d %H:%M %Z")


def iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _runs_view(times: list[int], time_zone: str) -> list[dict[str, Any]]:
    return [{"time": t, "iso": iso(t), "text": zone_time(t, time_zone)} for t in times]


def _error_field(exc: NbJobsError) -> str:
    """Which input a schedule error belongs next to: the time zone's, else the expression's."""
    return "timeZone" if exc.message.startswith("Unknown time zone") else "cron"


# -- reading a task ----------------------------------------------------------------------------------


def _item_titles(nb: Nb, user: User, owners: set[str]) -> dict[str, str]:
    titles: dict[str, str] = {}
    for owner in owners:
        titles.update({i.item_id: i.title for i in nb.items.list(user.principal(), owner)})
    return titles


def _schedule(task: Task) -> dict[str, str]:
    builder = builder_from_task(task)
    return {"words": describe(builder), "cron": builder.cron, "zone": task.time_zone}


def _last_run(nb: Nb, user: User, task: Task) -> TaskRun | None:
    runs = nb.tasks.runs(user, task.owner, task.task_id, limit=1)
    return runs[0] if runs else None


@router.get("/tasks")
@page
def tasks_page(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = visit.signed_in()
    tasks = nb.tasks.visible(user)
    titles = _item_titles(nb, user, {t.owner for t in tasks})
    rows = [
        {"task": t, "item": titles.get(t.item_id, t.item_id), "schedule": _schedule(t),
         "next": zone_time(t.next_fire, t.time_zone) if t.next_fire else "", "last": _last_run(nb, user, t)}
        for t in tasks
    ]  # fmt: skip
    return render(request, "tasks.html", user=user, csrf=visit.csrf, nav="tasks", rows=rows,
                  admin=user.is_admin, available=nb.tasks.active_available(user.username))  # fmt: skip


@router.get("/tasks/preview")
@page
def preview(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    """The next runs of the builder's inputs (``task=<id>``: as that task would have them, its start and
    end dates kept): JSON with ``f=json`` (what the form's script asks), else an HTML fragment."""
    user = visit.signed_in()
    task_id = params.text("task")
    task = nb.tasks.find(user, task_id) if task_id else None
    builder = builder_of(params.values)
    try:
        builder = builder.composed()
        times = nb.tasks.preview(_spec_of(builder), task, PREVIEW_COUNT)
        runs = _runs_view(times, builder.time_zone)
    except InvalidRequest as exc:
        if visit.wants_json:
            raise
        return render(request, "_task_preview.html", status_code=400, preview=None, preview_error=exc.message,
                      count=PREVIEW_COUNT)  # fmt: skip
    words = describe(builder)
    if visit.wants_json:
        body = {"cron": builder.cron, "description": words, "timeZone": builder.time_zone, "runs": runs}
        return JSONResponse(body, headers=APP_HEADERS)
    return render(request, "_task_preview.html", preview={"words": words, "runs": runs}, preview_error="",
                  count=PREVIEW_COUNT)  # fmt: skip


# -- the form ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class TaskForm:
    """What the form shows: the values (as text), the builder, and what is wrong with them."""

    title: str = ""
    item_id: str = ""
    notebook_parameters: str = ""
    runtime_id: str = ""
    timeout: str = ""
    active: bool = True
    builder: Builder = dataclasses.field(default_factory=Builder)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)  # input name -> message
    message: str = ""

    @classmethod
    def of_task(cls, task: Task) -> TaskForm:
        p = task.parameters
        given = p.get("notebookParameters") or {}
        timeout = p.get("executionTimeoutInMinutes")
        return cls(
            title=task.title, item_id=task.item_id, notebook_parameters=json.dumps(given) if given else "",
            runtime_id=str(p.get("notebookRuntimeId", "")), timeout="" if timeout is None else str(timeout),
            active=task.active, builder=builder_from_task(task),
        )  # fmt: skip

    @classmethod
    def submitted(cls, values: dict[str, str]) -> TaskForm:
        return cls(
            title=values.get("title", "").strip(), item_id=values.get("itemId", "").strip(),
            notebook_parameters=values.get("notebookParameters", "").strip(),
            runtime_id=values.get("notebookRuntimeId", "").strip(),
            timeout=values.get("executionTimeoutInMinutes", "").strip(),
            active=values.get("isActive", "") in ("true", "on"), builder=builder_of(values),
        )  # fmt: skip

    def api_values(self, task: Task | None) -> dict[str, str]:
        """The form as the tasks API's fields (``createTask``/``update``), for its own parser. A task's
        other parameters (retries, updatePortalItem, ...) are kept as they are."""
        parameters: dict[str, Any] = dict(task.parameters) if task is not None else {}
        parameters["notebookParameters"] = self.notebook_parameters
        parameters.pop("notebookRuntimeId", None)
        parameters.pop("executionTimeoutInMinutes", None)
        if self.runtime_id:
            parameters["notebookRuntimeId"] = self.runtime_id
        timeout = Params({"executionTimeoutInMinutes": self.timeout}).integer(
            "executionTimeoutInMinutes", None, minimum=0
        )
        if timeout is not None:
            parameters["executionTimeoutInMinutes"] = timeout
        minute, hour, dom, month, dow = self.builder.fields()
        return {
            "title": self.title, "type": EXECUTE_NOTEBOOK, "itemId": self.item_id,
            "parameters": json.dumps(parameters), "minute": minute, "hour": hour, "dayOfMonth": dom,
            "month": month, "dayOfWeek": dow, "timeZone": self.builder.time_zone,
            "isActive": "true" if self.active else "false",
        }  # fmt: skip


def _parameter_hint(nb: Nb, user: User, item_id: str) -> str:
    """The notebook's ``parameters`` cell as ``name = default`` text, to show beside the JSON field."""
    if not item_id:
        return ""
    try:
        _item, data = nb.items.data(user.principal(), item_id)
        defaults = notebook_defaults(data)
    except NbJobsError:
        return ""
    return ", ".join(f"{name} = {as_text(kind_of(v), v) or '…'}" for name, v in defaults.items())


def _form_page(
    request: Request, nb: Nb, visit: Visit, form: TaskForm, *, task: Task | None = None, status: int = 200,
    with_preview: bool = True,
) -> Response:  # fmt: skip
    user = visit.signed_in()
    owner = task.owner if task is not None else user.username
    items = notebook_items(nb, user, owner)
    try:
        runtimes = nb.runtimes.readable(user)
    except NbJobsError:
        runtimes = []
    preview: dict[str, Any] | None = None
    preview_error = ""
    if with_preview and not form.errors:
        try:
            builder = form.builder.composed()
            form.builder = builder
            times = nb.tasks.preview(_spec_of(builder), task, PREVIEW_COUNT)
            preview = {"words": describe(builder), "runs": _runs_view(times, builder.time_zone)}
        except InvalidRequest as exc:
            form.errors[_error_field(exc)] = exc.message
            status = 400
    if form.errors:
        preview_error = "No preview: correct the schedule first."
    action = (
        f"{base(request)}/tasks/{task.task_id}/edit" if task is not None else f"{base(request)}/tasks/new"
    )
    return render(
        request, "task_form.html", status_code=status, user=user, csrf=visit.csrf, nav="tasks", form=form,
        b=form.builder, task=task, items=items, runtimes=runtimes, repeats=REPEATS, days=DAYS,
        day_prefix=DAY_PREFIX, cron_fields=CRON_FIELDS, action=action, preview=preview,
        preview_error=preview_error, hint=_parameter_hint(nb, user, form.item_id), count=PREVIEW_COUNT,
    )  # fmt: skip


def _save(request: Request, nb: Nb, params: Params, visit: Visit, task: Task | None) -> Response:
    """Create (``task`` None) or update a task from the submitted form; the form again with the
    message and HTTP 400 when something is wrong, nothing stored; the preview alone for "Preview"."""
    user = visit.signed_in()
    form = TaskForm.submitted(params.values)
    if "preview" in params.values:
        return _form_page(request, nb, visit, form, task=task)
    try:
        form.builder = form.builder.composed()
    except InvalidRequest as exc:
        if visit.wants_json:
            raise
        form.errors[_error_field(exc)] = exc.message
    if not form.title:
        form.errors["title"] = "Give the task a title."
    if not form.item_id:
        form.errors["itemId"] = "Choose the notebook the task runs."
    if form.errors:
        if visit.wants_json:
            raise InvalidRequest("The task was not saved.", details=list(form.errors.values()))
        form.message = "The task was not saved: correct the fields marked below."
        return _form_page(request, nb, visit, form, task=task, status=400, with_preview=False)
    try:
        spec = api_task_spec(nb, Params(form.api_values(task)), update=task is not None)
        if task is None:
            saved = nb.tasks.create(user, user.username, spec)
        else:
            saved = nb.tasks.update(user, task.owner, task.task_id, spec)
    except PermissionDenied:
        raise  # no privilege to schedule notebooks: the error page
    except NbJobsError as exc:  # a bad schedule or parameters, another's item, the active-task limit
        if visit.wants_json:
            raise
        if exc.message.startswith(("Invalid cron", "Unknown time zone")):
            form.errors[_error_field(exc)] = exc.message
        form.message = f"The task was not saved: {exc.message}"
        return _form_page(request, nb, visit, form, task=task, status=400, with_preview=False)
    return redirect(f"{base(request)}/tasks/{saved.task_id}")


@router.get("/tasks/new")
@page
def new_task_page(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    """The form for a new task (``itemId=<id>``: that notebook chosen)."""
    visit.signed_in()
    form = TaskForm(item_id=params.text("itemId"))
    return _form_page(request, nb, visit, form)


@router.post("/tasks/new")
@page
def create_task(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    return _save(request, nb, params, visit, None)


# -- one task ----------------------------------------------------------------------------------------


@router.get("/tasks/{task_id}")
@page
def task_page(request: Request, task_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = visit.signed_in()
    task = nb.tasks.find(user, task_id)
    runs = nb.tasks.runs(user, task.owner, task.task_id)
    try:
        item_title = nb.items.get(user.principal(), task.item_id).title
    except NbJobsError:
        item_title = ""
    p = task.parameters
    return render(
        request, "task.html", user=user, csrf=visit.csrf, nav="tasks", task=task, item_title=item_title,
        schedule=_schedule(task), upcoming=_runs_view(next_occasions(task, nb.clock(), PREVIEW_COUNT),
                                                      task.time_zone),
        runs=runs, count=PREVIEW_COUNT, parameters=json.dumps(p.get("notebookParameters") or {}, indent=1),
        runtime_id=p.get("notebookRuntimeId", ""), timeout=p.get("executionTimeoutInMinutes"),
        next_run=zone_time(task.next_fire, task.time_zone) if task.next_fire else "",
        zone_time=zone_time, iso=iso,
    )  # fmt: skip


@router.get("/tasks/{task_id}/edit")
@page
def edit_task_page(request: Request, task_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = visit.signed_in()
    task = nb.tasks.find(user, task_id)
    return _form_page(request, nb, visit, TaskForm.of_task(task), task=task)


@router.post("/tasks/{task_id}/edit")
@page
def edit_task(request: Request, task_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = visit.signed_in()
    return _save(request, nb, params, visit, nb.tasks.find(user, task_id))


@router.post("/tasks/{task_id}/active")
@page
def set_active(request: Request, task_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """Pause (``active=false``) or resume (``active=true``) a task."""
    user = visit.signed_in()
    task = nb.tasks.find(user, task_id)
    nb.tasks.set_active(user, task.owner, task.task_id, params.flag("active", True))
    return redirect(f"{base(request)}/tasks/{task.task_id}")


@router.post("/tasks/{task_id}/delete")
@page
def delete_task(request: Request, task_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """Delete a task and its run history (the jobs it started stay)."""
    user = visit.signed_in()
    task = nb.tasks.find(user, task_id)
    nb.tasks.delete(user, task.owner, task.task_id)
    return redirect(f"{base(request)}/tasks")
