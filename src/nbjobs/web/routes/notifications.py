"""Notifications (an nbjobs extension; ArcGIS has none): the admin's settings (SMTP, the SSRF allow-list),
every delivery, a test message, and a job's own rules and delivery log."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import InvalidRequest, JobNotFound
from nbjobs.models.jobs import is_job_id
from nbjobs.models.notifications import Attempt, Delivery
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.render import Link, Operation, respond
from nbjobs.web.routing import operation

router = APIRouter(prefix="/admin")
TAGS = ("notifications",)
_EDIT_FIELDS = ("smtp", "allowList")
_TEST_FIELDS = ("email", "url", "secret")


def _delivery_view(delivery: Delivery, attempts: list[Attempt]) -> dict[str, Any]:
    return {**delivery.to_wire(), "attemptLog": [a.to_wire() for a in attempts]}


def _allow_list(raw: str) -> list[str] | None:
    if raw == "":
        return None
    if raw.startswith("["):
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidRequest("Invalid value for 'allowList': not valid JSON.") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidRequest("Invalid value for 'allowList': a JSON list of strings, or comma-separated.")
        return value
    return [part for part in raw.split(",") if part.strip()]


@operation(router, "/notifications", summary="nbjobs extension: notifications (admins)", tags=TAGS)
def notifications_root(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    view = nb.notifications.settings_view(user)
    return respond(
        request,
        {"resources": ["settings", "deliveries"], **view},
        title="Notifications",
        links=[Link("settings", "notifications/settings"), Link("deliveries", "notifications/deliveries")],
        operations=[Operation("test", "notifications/test", _TEST_FIELDS)],
    )


@operation(router, "/notifications/settings", summary="nbjobs extension: SMTP and allow-list", tags=TAGS)
def notification_settings(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    return respond(
        request,
        nb.notifications.settings_view(user),
        title="Notification settings",
        operations=[Operation("edit", "settings/edit", _EDIT_FIELDS)],
    )


@operation(
    router,
    "/notifications/settings/edit",
    summary="nbjobs extension: change SMTP settings (JSON object) and/or the allow-list",
    methods=("POST",),
    fields=_EDIT_FIELDS,
    tags=TAGS,
)
def notification_settings_edit(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    view = nb.notifications.update_settings(
        user, smtp=params.json_object("smtp"), allow_list=_allow_list(params.text("allowList"))
    )
    return respond(request, {"status": "success", **view}, title="Notification settings")


@operation(
    router,
    "/notifications/deliveries",
    summary="nbjobs extension: every notification delivery, newest first (admins)",
    fields=("status", "num"),
    tags=TAGS,
)
def notification_deliveries(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    limit = params.integer("num", 100, minimum=1, maximum=1000) or 100
    rows = nb.notifications.recent(user, status=params.text("status"), limit=limit)
    return respond(
        request,
        {"deliveries": [_delivery_view(d, a) for d, a in rows]},
        title="Notification deliveries",
    )


@operation(
    router,
    "/notifications/test",
    summary="nbjobs extension: send a test notification now (admins)",
    methods=("POST",),
    fields=_TEST_FIELDS,
    tags=TAGS,
)
def notification_test(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    outcome = nb.notifications.send_test(
        user, email=params.text("email"), url=params.text("url"), secret=params.text("secret")
    )
    return respond(
        request,
        {"status": "success" if outcome.ok else "failed", "detail": outcome.detail},
        title="Test notification",
    )


@operation(
    router,
    "/notebooks/jobs/{job_id}/notifications",
    summary="nbjobs extension: a job's notification rules and delivery log (its owner, admins)",
    tags=TAGS,
)
def job_notifications(request: Request, job_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    if not is_job_id(job_id):
        raise JobNotFound(job_id)
    who = user.principal()
    rules = nb.notifications.rules_of_job(who, job_id)
    rows = nb.notifications.job_deliveries(who, job_id)
    return respond(
        request,
        {
            "jobId": job_id,
            "rules": [r.to_wire() for r in rules],
            "deliveries": [_delivery_view(d, a) for d, a in rows],
        },
        title=f"Notifications of job {job_id}",
    )
