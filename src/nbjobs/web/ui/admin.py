"""The app's admin pages (administrators only): users — list, add, disable and enable; runtimes — their
limits, preload, start method and start status, an edit form and a check; workers — the machines view
with heartbeats and running jobs. The services and ``service/authz.py`` decide who may; a refusal
renders the error page (or the API's 403 envelope)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import NbJobsError
from nbjobs.models.accounts import ORG_USER, User
from nbjobs.models.runtimes import START_METHODS, RuntimeSpec
from nbjobs.service.authz import require_admin
from nbjobs.service.runtimes.registry import RuntimeCheck
from nbjobs.web.deps import Form, Nb
from nbjobs.web.params import Params
from nbjobs.web.routes.runtimes import fields_of
from nbjobs.web.ui.pages import base, page, redirect, render
from nbjobs.web.ui.session import Visit, Visitor

router = APIRouter(include_in_schema=False)  # included by routes.py under /app
ADMINS_ONLY = "Administrators only: this page is for administrators."


def _admin(visit: Visit) -> User:
    user = visit.signed_in()
    require_admin(user, ADMINS_ONLY)
    return user


def _users_page(request: Request, nb: Nb, visit: Visit, status: int = 200, message: str = "") -> Response:
    user = _admin(visit)
    users = sorted(nb.users.list(), key=lambda u: u.username)
    return render(request, "admin_users.html", status_code=status, user=user, csrf=visit.csrf, nav="admin",
                  section="users", users=users, message=message)  # fmt: skip


@router.get("/admin/users")
@page
def users_page(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    return _users_page(request, nb, visit)


@router.post("/admin/users/add")
@page
def add_user(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    _admin(visit)
    try:
        nb.users.add(params.text("username"), params.text("password"), role=params.text("role") or ORG_USER)
    except NbJobsError as exc:  # a bad name, role or password; a taken name
        if visit.wants_json:
            raise
        return _users_page(request, nb, visit, 400, f"The user was not added: {exc.message}")
    return redirect(f"{base(request)}/admin/users")


@router.post("/admin/users/{username}/disabled")
@page
def set_disabled(request: Request, nb: Nb, params: Form, visit: Visitor, username: str) -> Response:
    _admin(visit)
    nb.users.set_disabled(username, params.text("disabled") == "true")
    return redirect(f"{base(request)}/admin/users")


# -- runtimes ---------------------------------------------------------------------------------------

UNIT_NAMES = {"b": "bytes", "k": "KiB", "m": "MiB", "g": "GiB"}
# The edit form's fields: the API's update fields (web/routes/runtimes.py parses them, as for the API).
NUMBERS = ("maxCpu", "maxMemory", "maxSwapMemory", "maxWallMinutes", "maxOutputBytes")
TEXTS = ("name", "version", "python", "maxMemoryUnit", "maxSwapMemoryUnit", "preload", "startMethod")
FLAGS = ("requiresAdvancedPrivileges", "disabled")
FIELDS = (*NUMBERS, *TEXTS, *FLAGS)


def _number(value: float) -> str:
    """2.0 as "2", 2.5 as "2.5"."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _bytes(count: int) -> str:
    amount, unit = float(count), "bytes"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if amount < 1024:
            break
        amount, unit = amount / 1024, larger
    return f"{_number(round(amount, 1))} {unit}"


def limits_of(spec: RuntimeSpec) -> list[tuple[str, str]]:
    """A runtime's limits in human units (0 means no limit, or the server's default)."""
    cpu = _number(spec.max_cpu) + (" CPU" if spec.max_cpu == 1 else " CPUs")
    return [
        ("Max CPU", cpu if spec.max_cpu else "no limit"),
        ("Max memory", f"{_number(spec.max_memory)} {UNIT_NAMES[spec.max_memory_unit]}" if spec.max_memory
         else "no limit"),
        ("Max swap", f"{_number(spec.max_swap_memory)} {UNIT_NAMES[spec.max_swap_memory_unit]}"
         if spec.max_swap_memory else "no limit"),
        ("Max run time", f"{_number(spec.max_wall_minutes)} min" if spec.max_wall_minutes
         else "the server's maxExecuteNotebookTimeMinutes"),
        ("Max output", _bytes(spec.max_output_bytes) if spec.max_output_bytes else "the server's default"),
    ]  # fmt: skip


@dataclass(frozen=True)
class RuntimeRow:
    """One runtime as the pages show it."""

    spec: RuntimeSpec
    python: str  # the interpreter its kernels run in
    limits: list[tuple[str, str]]
    check: RuntimeCheck | None  # the check just run from the page, if any


def _rows(nb: Nb, specs: list[RuntimeSpec], checks: list[RuntimeCheck] | None = None) -> list[RuntimeRow]:
    found = {c.runtime.runtime_id: c for c in checks or ()}
    return [RuntimeRow(s, nb.runtimes.python_of(s), limits_of(s), found.get(s.runtime_id)) for s in specs]


def _runtimes_page(
    request: Request, nb: Nb, visit: Visit, checks: list[RuntimeCheck] | None = None
) -> Response:
    user = _admin(visit)
    rows = _rows(nb, nb.runtimes.list(), checks)
    return render(request, "admin_runtimes.html", user=user, csrf=visit.csrf, nav="admin", section="runtimes",
                  rows=rows, checked=checks is not None)  # fmt: skip


def _form_of(spec: RuntimeSpec) -> dict[str, str]:
    """The edit form filled with the runtime's values."""
    return {
        "name": spec.name,
        "version": spec.version,
        "python": spec.python,
        "maxCpu": _number(spec.max_cpu),
        "maxMemory": _number(spec.max_memory),
        "maxMemoryUnit": spec.max_memory_unit,
        "maxSwapMemory": _number(spec.max_swap_memory),
        "maxSwapMemoryUnit": spec.max_swap_memory_unit,
        "maxWallMinutes": _number(spec.max_wall_minutes),
        "maxOutputBytes": str(spec.max_output_bytes),
        "requiresAdvancedPrivileges": "true" if spec.requires_advanced_privileges else "false",
        "disabled": "true" if spec.disabled else "false",
        "preload": ", ".join(spec.preload),
        "startMethod": spec.start_method,
    }


def _runtime_page(
    request: Request, nb: Nb, visit: Visit, runtime_id: str, *, status: int = 200, message: str = "",
    form: dict[str, str] | None = None, check: RuntimeCheck | None = None,
) -> Response:  # fmt: skip
    user = _admin(visit)
    spec = nb.runtimes.read(user, runtime_id)
    [row] = _rows(nb, [spec], [check] if check else None)
    return render(request, "admin_runtime.html", status_code=status, user=user, csrf=visit.csrf, nav="admin",
                  section="runtimes", row=row, form=form or _form_of(spec), message=message,
                  units=UNIT_NAMES, methods=START_METHODS)  # fmt: skip


def _sent(params: Params) -> dict[str, str]:
    return {k: params.values[k] for k in FIELDS if k in params.values}


def _update_params(params: Params) -> Params:
    """The form's fields as the API's update takes them. The preload field lists every module, so an
    emptied one means none (the API reads an empty value as "unchanged", ``[]`` as none)."""
    values = _sent(params)
    if "preload" in values and not values["preload"].strip():
        values["preload"] = "[]"
    return Params(values=values)


@router.get("/admin/runtimes")
@page
def runtimes_page(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    return _runtimes_page(request, nb, visit)


@router.post("/admin/runtimes/check")
@page
def check_runtimes(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    """Run validateRuntimes' check of every runtime and show its results in the list."""
    return _runtimes_page(request, nb, visit, nb.runtimes.check(_admin(visit)))


@router.get("/admin/runtimes/{runtime_id}")
@page
def runtime_page(request: Request, nb: Nb, params: Form, visit: Visitor, runtime_id: str) -> Response:
    return _runtime_page(request, nb, visit, runtime_id)


@router.post("/admin/runtimes/{runtime_id}/update")
@page
def update_runtime(request: Request, nb: Nb, params: Form, visit: Visitor, runtime_id: str) -> Response:
    user = _admin(visit)
    spec = nb.runtimes.read(user, runtime_id)  # an unknown runtime is the 404 page, not a form to fix
    try:
        nb.runtimes.update(user, runtime_id, fields_of(_update_params(params)))
    except NbJobsError as exc:  # a bad value: the field parser's or the service's message
        if visit.wants_json:
            raise
        form = {**_form_of(spec), **_sent(params)}  # what was sent, to fix
        return _runtime_page(request, nb, visit, runtime_id, status=400, form=form,
                             message=f"The runtime was not changed: {exc.message}")  # fmt: skip
    return redirect(f"{base(request)}/admin/runtimes/{runtime_id}")


@router.post("/admin/runtimes/{runtime_id}/check")
@page
def check_runtime(request: Request, nb: Nb, params: Form, visit: Visitor, runtime_id: str) -> Response:
    [check] = nb.runtimes.check(_admin(visit), runtime_id)
    return _runtime_page(request, nb, visit, runtime_id, check=check)


# -- workers ----------------------------------------------------------------------------------------


@router.get("/admin/workers")
@page
def workers_page(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = _admin(visit)
    machines = nb.machines.list(user)
    now = nb.clock()
    rows: list[dict[str, Any]] = [
        {"machine": m, "worker": m.worker, "age": max(0, now - m.worker.last_heartbeat)} for m in machines
    ]
    return render(request, "admin_workers.html", user=user, csrf=visit.csrf, nav="admin", section="workers",
                  rows=rows, running=sum(len(m.running_jobs) for m in machines),
                  distributed=bool(nb.settings.broker.broker_url),
                  lease=_number(nb.machines.lease_ms / 1000))  # fmt: skip
