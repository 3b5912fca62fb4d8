"""The app's webhook receivers pages (administrators; a receiver's run-as user may read its own page, as
the API lets them): the list, creating one (its secret is shown once, on the answer to the create, and
never again), a receiver's settings, enable/disable, delete, and its delivery log. ``WebhookService`` and
``service/authz.py`` decide; nothing here is a second way of doing what the API does."""

from __future__ import annotations

import json

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import InvalidRequest, NbJobsError, NotFound
from nbjobs.models.accounts import User
from nbjobs.models.automation import Receiver
from nbjobs.service.authz import WEBHOOK_RECEIVERS, require_admin
from nbjobs.service.automation.webhooks import ReceiverSpec, new_secret, signature_of
from nbjobs.web.deps import Form, Nb
from nbjobs.web.params import Params
from nbjobs.web.ui.notebooks import notebook_items
from nbjobs.web.ui.pages import base, page, redirect, render
from nbjobs.web.ui.session import Visit, Visitor
from nbjobs.web.views import base_url

router = APIRouter(include_in_schema=False)  # included by routes.py under /app
DEFAULT_HEADER = "x-hub-signature-256"  # GitHub's; any sender that signs the same way works
EXAMPLE_BODY = '{"event": "ping"}'
DELIVERIES_SHOWN = 100
NO_STORE = {"Cache-Control": "no-store"}


def _admin(visit: Visit) -> User:
    user = visit.signed_in()
    require_admin(user, WEBHOOK_RECEIVERS)
    return user


def _sink_url(request: Request, nb: Nb, receiver: Receiver) -> str:
    """Where a sender POSTs its events (the receiver's ``url`` in the API)."""
    return f"{base_url(request, nb.settings)}/rest/events/webhooks/{receiver.receiver_id}"


def _title(nb: Nb, user: User, item_id: str) -> str:
    try:
        return nb.items.get(user.principal(), item_id).title
    except NbJobsError:  # the item was deleted since: the receiver will refuse its events
        return ""


def _list_page(
    request: Request, nb: Nb, visit: Visit, status: int = 200, message: str = "",
    chosen: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    user = _admin(visit)
    rows = []
    for receiver in sorted(nb.webhooks.list(user), key=lambda r: r.name.lower()):
        last = nb.webhooks.deliveries(user, receiver.receiver_id, 1)
        rows.append({"receiver": receiver, "title": _title(nb, user, receiver.item_id),
                     "last": last[0] if last else None})  # fmt: skip
    notebooks = []  # every notebook item, by owner: a receiver may run another user's notebook as them
    for owner in sorted(u.username for u in nb.users.list()):
        items = notebook_items(nb, user, owner)
        if items:
            notebooks.append((owner, items))
    return render(
        request, "webhooks.html", status_code=status, user=user, csrf=visit.csrf, nav="webhooks", rows=rows,
        notebooks=notebooks, message=message, chosen=chosen or {}, default_header=DEFAULT_HEADER,
    )  # fmt: skip


@router.get("/webhooks")
@page
def webhooks_page(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    return _list_page(request, nb, visit)


def _spec(params: Params, secret: str) -> ReceiverSpec:
    """The form as the API's create fields (the same names: name, itemId, username, signatureHeaders,
    parameters; the secret is the one typed, else a fresh one)."""
    return ReceiverSpec(
        name=params.text("name"),
        item_id=params.text("itemId"),
        secret=secret,
        signature_headers=params.words("signatureHeaders") or (),
        parameters=params.json_object("parameters"),
        username=params.text("username") or None,
    )


@router.post("/webhooks/create")
@page
def create_receiver(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    """Create a receiver and answer its page with the secret: the only time it is ever shown."""
    user = _admin(visit)
    secret = params.values.get("secret", "") or new_secret()
    try:
        receiver = nb.webhooks.create(user, _spec(params, secret))
    except (InvalidRequest, NotFound) as exc:  # a bad field or JSON, an unknown item or user
        if visit.wants_json:
            raise
        chosen = {k: params.text(k) for k in ("name", "itemId", "username", "signatureHeaders", "parameters")}
        message = " ".join(["The receiver was not created:", exc.message, *exc.details])
        return _list_page(request, nb, visit, 400, message, chosen)  # the secret is not sent back
    response = _receiver_page(request, nb, visit, user, receiver, secret=secret)
    response.headers.update(NO_STORE)
    return response


def _example(url: str, header: str, secret: str) -> dict[str, str]:
    """A signed test event as curl commands: with the secret in a shell variable (any time), and, on the
    create answer only, ready to paste with the signature of the example body worked out."""
    quoted = EXAMPLE_BODY.replace("'", "'\\''")
    recipe = (
        f"BODY='{quoted}'\n"
        "SIG=$(printf '%s' \"$BODY\" | openssl dgst -sha256 -hmac \"$SECRET\" | sed 's/^.* //')\n"
        f"curl -X POST '{url}' \\\n  -H 'Content-Type: application/json' \\\n"
        f'  -H "{header}: sha256=$SIG" \\\n  --data-binary "$BODY"'
    )
    ready = ""
    if secret:
        signature = signature_of(secret, EXAMPLE_BODY.encode()).hex()
        ready = (
            f"curl -X POST '{url}' \\\n  -H 'Content-Type: application/json' \\\n"
            f"  -H '{header}: sha256={signature}' \\\n  --data-binary '{quoted}'"
        )
    return {"recipe": recipe, "ready": ready}


def _receiver_page(
    request: Request, nb: Nb, visit: Visit, user: User, receiver: Receiver, *, secret: str = ""
) -> Response:
    try:
        nb.webhooks.validate(user, receiver.receiver_id)
        problem = ""
    except NbJobsError as exc:  # disabled, run-as user disabled, the notebook gone
        problem = exc.message
    url = _sink_url(request, nb, receiver)
    header = receiver.signature_headers[0] if receiver.signature_headers else DEFAULT_HEADER
    deliveries = nb.webhooks.deliveries(user, receiver.receiver_id, DELIVERIES_SHOWN)
    parameters = json.dumps(receiver.parameters, indent=2) if receiver.parameters else ""
    return render(
        request, "webhook.html", user=user, csrf=visit.csrf, nav="webhooks", receiver=receiver,
        title=_title(nb, user, receiver.item_id), url=url, header=header, problem=problem,
        deliveries=deliveries, parameters=parameters, secret=secret, example=_example(url, header, secret),
        admin=user.is_admin, shown=DELIVERIES_SHOWN,
    )  # fmt: skip


@router.get("/webhooks/{receiver_id}")
@page
def receiver_page(request: Request, receiver_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """A receiver's settings, whether it could start a job now, and its delivery log (never its secret)."""
    user = visit.signed_in()
    return _receiver_page(request, nb, visit, user, nb.webhooks.get(user, receiver_id))


@router.post("/webhooks/{receiver_id}/disabled")
@page
def set_disabled(request: Request, receiver_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = _admin(visit)
    nb.webhooks.set_disabled(user, receiver_id, params.flag("disabled", True))
    return redirect(f"{base(request)}/webhooks/{receiver_id}")


@router.post("/webhooks/{receiver_id}/delete")
@page
def delete_receiver(request: Request, receiver_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = _admin(visit)
    nb.webhooks.delete(user, receiver_id)
    return redirect(f"{base(request)}/webhooks")
