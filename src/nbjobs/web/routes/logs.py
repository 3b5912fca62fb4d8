"""``/admin/logs``: the ArcGIS logs resource (query, settings, settings/edit, clean), administrators only.

docs/api.md ("Logs") says what nbjobs decided where ArcGIS leaves it open.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.models.logs import LogMessage, LogSettings
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.params import Params
from nbjobs.web.render import Link, Operation, respond
from nbjobs.web.routing import operation

router = APIRouter(prefix="/admin/logs")
TAGS = ("admin",)
QUERY_FIELDS = (
    "startTime",
    "endTime",
    "sinceServerStart",
    "level",
    "filter",
    "source",
    "jobId",
    "pageSize",
)
EDIT_FIELDS = ("logLevel", "maxLogFileAge", "logDir", "settings")
SETTING_NAMES = ("logLevel", "maxLogFileAge")


def message_view(m: LogMessage) -> dict[str, Any]:
    """A message as ArcGIS lists it (``type``, ``message``, ``time``, ``source``, ``machine``, ``user``,
    ``process``, ``thread``, ``methodName``), plus nbjobs's ``jobId``, ``runtime``, ``requestId``."""
    return {
        "type": m.type.value,
        "message": m.message,
        "time": m.time,
        "source": m.source,
        "machine": m.machine,
        "user": m.username,
        "process": str(m.process),
        "thread": m.thread,
        "methodName": m.method_name,
        "jobId": m.job_id,
        "runtime": m.runtime,
        "requestId": m.request_id,
    }


def settings_view(settings: LogSettings) -> dict[str, Any]:
    """ArcGIS's ``{"settings": {...}}``, and the same values at the top level: the Esri client's setter
    posts back the top-level keys of what it read, so a user's ``settings["logLevel"] = "INFO"`` works."""
    values = {"logDir": "", "logLevel": settings.log_level.value, "maxLogFileAge": settings.max_log_file_age}
    return {"settings": values, **values}


@operation(router, "", summary="The logs resource (administrators)", tags=TAGS)
def logs_root(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.logs.settings(user)  # administrators only
    return respond(
        request,
        {"resources": ["settings"], "operations": ["query", "clean"]},
        title="Logs",
        links=[Link("settings", "logs/settings")],
        operations=[Operation("query", "logs/query", QUERY_FIELDS), Operation("clean", "logs/clean")],
    )


@operation(
    router, "/query", summary="Query the kept log messages, newest first", fields=QUERY_FIELDS, tags=TAGS
)
def query_logs(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    page = nb.logs.query(
        user,
        start_time=params.text("startTime"),
        end_time=params.text("endTime"),
        since_server_start=params.flag("sinceServerStart", False),
        level=params.text("level"),
        filter=params.json_object("filter"),
        source=params.words("source") or (),
        job_id=params.text("jobId"),
        page_size=params.integer("pageSize", None),
    )
    return respond(
        request,
        {
            "hasMore": page.has_more,
            "startTime": page.start_time,
            "endTime": page.end_time,
            "logMessages": [message_view(m) for m in page.messages],
        },
        title="Log query",
    )


@operation(router, "/settings", summary="Log settings", tags=TAGS)
def log_settings(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    return respond(
        request,
        settings_view(nb.logs.settings(user)),
        title="Log settings",
        operations=[Operation("edit", "settings/edit", EDIT_FIELDS)],
    )


def _changes(params: Params, current: LogSettings) -> dict[str, Any]:
    """The settings asked for: form fields, or a ``settings`` JSON object. The Esri client sends both
    (the values it read, one of them changed): of two different values, the one that is a change wins."""
    nested = params.json_object("settings") or {}
    stored = current.to_stored()
    changes: dict[str, Any] = {}
    for name in SETTING_NAMES:
        flat, inner = params.values.get(name), nested.get(name)
        given = [v for v in (flat, inner) if v is not None and v != ""]
        if not given:
            continue
        differing = [v for v in given if str(v).strip().upper() != str(stored[name]).upper()]
        changes[name] = (differing or given)[0]
    return changes


@operation(
    router,
    "/settings/edit",
    summary="Edit the log settings",
    methods=("POST",),
    fields=EDIT_FIELDS,
    tags=TAGS,
)
def edit_log_settings(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    updated = nb.logs.edit_settings(user, _changes(params, nb.logs.settings(user)))
    return respond(request, {"status": "success", **settings_view(updated)}, title="Log settings updated")


@operation(router, "/clean", summary="Delete every kept log message", methods=("POST",), tags=TAGS)
def clean_logs(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.logs.clean(user)
    return respond(request, {"status": "success"}, title="Logs cleaned")
