"""Webhook receivers: the admin API at ``/admin/notebooks/webhookReceivers`` and the signed sink.

The sink answers ``POST /rest/events/webhooks/<id>`` (family A) and ``POST
/admin/notebooks/webhookReceivers/<id>`` (family B); a GET of the latter is the receiver's admin view.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.models.automation import Delivery, Receiver
from nbjobs.service.automation.webhooks import Event, ReceiverSpec
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.params import Params
from nbjobs.web.render import Link, Operation, respond
from nbjobs.web.routing import operation
from nbjobs.web.services import WebServices
from nbjobs.web.views import base_url

admin = APIRouter(prefix="/admin/notebooks/webhookReceivers")
events = APIRouter(prefix="/rest/events/webhooks")
TAGS = ("webhooks",)
_FIELDS = ("name", "itemId", "secret", "signatureHeaders", "apiToken", "username", "parameters")
_UPDATE_FIELDS = (*_FIELDS, "disabled")


def receiver_view(request: Request, nb: WebServices, receiver: Receiver) -> dict[str, Any]:
    """A receiver as ArcGIS renders it, without its secret."""
    return {
        "id": receiver.receiver_id,
        "name": receiver.name,
        "itemId": receiver.item_id,
        "signatureHeaders": ",".join(receiver.signature_headers),
        "username": receiver.username,
        "disabled": receiver.disabled,
        "parameters": json.dumps(receiver.parameters),
        "message": "",
        "url": f"{base_url(request, nb.settings)}/rest/events/webhooks/{receiver.receiver_id}",
        "created": receiver.created,
        "updated": receiver.updated,
    }


def delivery_view(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.delivery_id,
        "time": d.received,
        "source": d.source,
        "signatureOk": d.signature_ok,
        "jobId": d.job_id or None,
        "rejection": d.reason or None,
    }


def _spec(params: Params, *, update: bool) -> ReceiverSpec:
    def text(name: str) -> str | None:
        value = params.values.get(name)
        return None if value is None or (update and value.strip() == "") else value

    return ReceiverSpec(
        name=text("name"),
        item_id=text("itemId"),
        secret=text("secret"),
        signature_headers=params.words("signatureHeaders"),
        parameters=params.json_object("parameters"),
        disabled=params.flag("disabled", False) if params.text("disabled") else None,
        api_token=params.text("apiToken") or None,
        username=params.text("username") or None,
    )


@operation(admin, "", summary="Webhook receivers", tags=TAGS)
def list_receivers(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    receivers = nb.webhooks.list(user)
    return respond(
        request,
        {"webhookReceivers": [receiver_view(request, nb, r) for r in receivers]},
        title="Webhook receivers",
        links=[Link(r.name, r.receiver_id) for r in receivers],
        operations=[Operation("create", "create", _FIELDS)],
    )


@operation(
    admin, "/create", summary="Create a webhook receiver", methods=("POST",), fields=_FIELDS, tags=TAGS
)
def create_receiver(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    receiver = nb.webhooks.create(user, _spec(params, update=False))
    view = {**receiver_view(request, nb, receiver), "apiToken": ""}
    return respond(request, {"webhookReceiver": view}, title="Webhook receiver created")


@admin.get("/{receiver_id}", summary="One webhook receiver", tags=list(TAGS))
def get_receiver(request: Request, receiver_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    receiver = nb.webhooks.get(user, receiver_id)
    return respond(
        request,
        receiver_view(request, nb, receiver),
        title=receiver.name,
        links=[Link("deliveries", "deliveries")],
        operations=[
            Operation("update", "update", _UPDATE_FIELDS),
            Operation("enable", "enable"),
            Operation("disable", "disable"),
            Operation("validate", "validate"),
            Operation("delete", "delete"),
        ],
    )


async def _receive(request: Request, nb: WebServices, receiver_id: str) -> Response:
    limit = nb.webhooks.max_body_bytes
    chunks: list[bytes] = []
    size = 0
    async for (
        chunk
    ) in request.stream():  # read past the limit, keeping nothing, so the sender sees our answer
        size += len(chunk)
        if size <= limit + 1:
            chunks.append(chunk)
    body = b"".join(chunks)[: limit + 1]
    event = Event(
        body=body,
        headers={k.lower(): v for k, v in request.headers.items()},
        source=request.client.host if request.client else "",
        too_large=size > limit,
    )
    job = await asyncio.to_thread(nb.webhooks.receive, receiver_id, event)
    job_url = f"{base_url(request, nb.settings)}/admin/notebooks/jobs/{job.job_id}"
    return respond(
        request, {"status": "success", "jobId": job.job_id, "jobUrl": job_url}, title="Job submitted"
    )


@admin.post("/{receiver_id}", summary="Webhook sink (family B): a signed event starts a job", tags=list(TAGS))
async def admin_sink(request: Request, receiver_id: str, nb: Nb) -> Response:
    return await _receive(request, nb, receiver_id)


@events.post(
    "/{receiver_id}", summary="Webhook sink (family A): a signed event starts a job", tags=list(TAGS)
)
async def events_sink(request: Request, receiver_id: str, nb: Nb) -> Response:
    return await _receive(request, nb, receiver_id)


@operation(
    admin,
    "/{receiver_id}/update",
    summary="Change a receiver",
    methods=("POST",),
    fields=_UPDATE_FIELDS,
    tags=TAGS,
)
def update_receiver(request: Request, receiver_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.webhooks.update(user, receiver_id, _spec(params, update=True))
    return respond(request, {"status": "success"}, title="Receiver updated")


@operation(admin, "/{receiver_id}/enable", summary="Enable a receiver", methods=("POST",), tags=TAGS)
def enable_receiver(request: Request, receiver_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.webhooks.set_disabled(user, receiver_id, False)
    return respond(request, {"status": "success"}, title="Receiver enabled")


@operation(admin, "/{receiver_id}/disable", summary="Disable a receiver", methods=("POST",), tags=TAGS)
def disable_receiver(request: Request, receiver_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.webhooks.set_disabled(user, receiver_id, True)
    return respond(request, {"status": "success"}, title="Receiver disabled")


@operation(admin, "/{receiver_id}/delete", summary="Delete a receiver", methods=("POST",), tags=TAGS)
def delete_receiver(request: Request, receiver_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.webhooks.delete(user, receiver_id)
    return respond(request, {"status": "success"}, title="Receiver deleted")


@operation(admin, "/{receiver_id}/validate", summary="Check a receiver could start a job", tags=TAGS)
def validate_receiver(request: Request, receiver_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.webhooks.validate(user, receiver_id)
    return respond(request, {"status": "success"}, title="Receiver valid")


@operation(admin, "/{receiver_id}/deliveries", summary="Delivery log (nbjobs extension)", tags=TAGS)
def deliveries(request: Request, receiver_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    num = params.integer("num", 100, minimum=1) or 100
    found = nb.webhooks.deliveries(user, receiver_id, min(num, 1000))
    return respond(request, {"deliveries": [delivery_view(d) for d in found]}, title="Deliveries")
