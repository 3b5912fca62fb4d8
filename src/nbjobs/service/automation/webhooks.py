"""Notebook webhook receivers: administration, and the sink that turns a signed event into a job.

The sink checks, in this order: the receiver exists, the body is within the size limit, the receiver's
rate limit, the receiver is enabled, a configured signature header carries a valid HMAC-SHA256 of the
raw body (base64, or GitHub's ``sha256=<hex>``), and the run-as user is enabled. Every event that reaches
a known receiver is written to its delivery log, accepted or not.
"""

from __future__ import annotations

import base64
import builtins
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nbjobs.clock import Clock
from nbjobs.errors import (
    InvalidRequest,
    InvalidToken,
    NbJobsError,
    PayloadTooLarge,
    RateLimited,
    ReceiverDisabled,
    ReceiverNotFound,
    RunAsUserDisabled,
    SignatureMismatch,
    SignatureMissing,
)
from nbjobs.models.accounts import User
from nbjobs.models.automation import Delivery, Receiver
from nbjobs.models.jobs import Job
from nbjobs.models.parameters import NotebookParameters, parse_parameters
from nbjobs.models.portal_stores import ReceiverStore
from nbjobs.service.accounts.tokens import TokenService
from nbjobs.service.accounts.users import UserService
from nbjobs.service.authz import (
    CREATE_NOTEBOOKS,
    WEBHOOK_RECEIVERS,
    may_see,
    require_admin,
    require_privilege,
)
from nbjobs.service.automation.ratelimit import RateLimiter
from nbjobs.service.content.items import NOTEBOOK_TYPE, ItemService
from nbjobs.service.jobs.execute_notebook import NotebookExecution

SECRET_LENGTH = 32
RESERVED_PARAMETERS = ("webhook_payload", "webhook_headers")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# Request headers a notebook never sees: credentials, cookies and anything that looks like a secret.
_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-esri-authorization"}
_SECRET_MARKERS = ("token", "secret", "signature", "password", "api-key", "apikey", "auth")


@dataclass(frozen=True)
class ReceiverSpec:
    """What create and update carry; None keeps the current value (update)."""

    name: str | None = None
    item_id: str | None = None
    secret: str | None = None
    signature_headers: tuple[str, ...] | None = None
    parameters: dict[str, Any] | None = None
    disabled: bool | None = None
    api_token: str | None = None  # run as the token's user
    username: str | None = None  # run as this user (an nbjobs extension; admins only)


@dataclass(frozen=True)
class Event:
    """An HTTP request that reached the sink. ``body`` is at most the size limit (+1 byte when over)."""

    body: bytes
    headers: Mapping[str, str]  # lower-case names
    source: str
    too_large: bool = False


def new_secret() -> str:
    """A fresh random receiver secret of exactly ``SECRET_LENGTH`` URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(SECRET_LENGTH * 3 // 4)


def signature_of(secret: str, body: bytes) -> bytes:
    """HMAC-SHA256 of ``body`` under ``secret``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()


def check_signature(secret: str, body: bytes, headers: Mapping[str, str], names: tuple[str, ...]) -> None:
    """Pass when one of the headers ``names`` holds the body's HMAC (base64, ``sha256=<hex>`` or hex);
    SignatureMissing when none is present, SignatureMismatch when none matches. Constant-time compare."""
    present = [headers[n] for n in names if n in headers]
    if not present:
        raise SignatureMissing(
            f"The event has no signature header; this receiver accepts {', '.join(names)}."
        )
    digest = signature_of(secret, body)
    as_base64, as_hex = base64.b64encode(digest), digest.hex().encode()
    ok = False
    for value in present:
        given = value.strip().encode("utf-8", "replace")
        lowered = given.lower()  # hex is case-insensitive; base64 is not
        # compare_digest on every form, no early exit, so timing says nothing about the match
        ok |= hmac.compare_digest(given, as_base64)
        ok |= hmac.compare_digest(lowered, as_hex)
        ok |= hmac.compare_digest(lowered, b"sha256=" + as_hex)
    if not ok:
        raise SignatureMismatch("The event signature does not match its body.")


def visible_headers(headers: Mapping[str, str], signature_names: tuple[str, ...]) -> dict[str, str]:
    """The request headers a notebook may read: no signatures, credentials, cookies or secrets."""
    out = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _SECRET_HEADERS or lowered in signature_names:
            continue
        if any(marker in lowered for marker in _SECRET_MARKERS):
            continue
        out[lowered] = value
    return out


def payload_of(body: bytes) -> Any:
    """The body as parsed JSON when it is JSON, else as text."""
    text = body.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse: the text
        return text


_OUTCOMES: tuple[tuple[type[NbJobsError], str], ...] = (
    (PayloadTooLarge, "too_large"),
    (RateLimited, "rate_limited"),
    (ReceiverDisabled, "disabled"),
    (SignatureMissing, "bad_signature"),
    (SignatureMismatch, "bad_signature"),
    (RunAsUserDisabled, "run_as_disabled"),
)


def delivery_outcome(exc: NbJobsError) -> str:
    """The word a refused event is counted under (a fixed set: never the message)."""
    return next((word for kind, word in _OUTCOMES if isinstance(exc, kind)), "refused")


class WebhookService:
    def __init__(
        self,
        store: ReceiverStore,
        items: ItemService,
        users: UserService,
        tokens: TokenService,
        notebooks: NotebookExecution,
        clock: Clock,
        *,
        max_body_bytes: int,
        rate_per_minute: int,
        delivered: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self.store = store
        self.delivered = delivered  # told each event's outcome (the metrics' webhook deliveries)
        self.items = items
        self.users = users
        self.tokens = tokens
        self.notebooks = notebooks
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        self.limiter = RateLimiter(rate_per_minute, clock)

    # -- administration (administrators) ------------------------------------------------------------
    def list(self, caller: User) -> list[Receiver]:
        require_admin(caller, WEBHOOK_RECEIVERS)
        return self.store.list()

    def get(self, caller: User, receiver_id: str) -> Receiver:
        """The receiver, for an administrator or its run-as user."""
        receiver = self.store.get(receiver_id)
        if receiver is None or not may_see(caller.principal(), receiver.username):
            raise ReceiverNotFound(receiver_id)
        return receiver

    def create(self, caller: User, spec: ReceiverSpec) -> Receiver:
        """A new enabled receiver; ``name``, ``itemId``, ``secret`` and ``signatureHeaders`` are required."""
        require_admin(caller, WEBHOOK_RECEIVERS)
        for field, label in (("name", "name"), ("item_id", "itemId"), ("secret", "secret")):
            if not getattr(spec, field):
                raise InvalidRequest(f"{label} is required.")
        if not spec.signature_headers:
            raise InvalidRequest("signatureHeaders is required (for example x-hub-signature-256).")
        now = self.clock()
        draft = Receiver(
            receiver_id=str(uuid.uuid4()),
            name="",
            item_id="",
            username=caller.username,
            secret="",
            signature_headers=(),
            parameters={},
            disabled=False,
            created=now,
            updated=now,
        )
        receiver = self._apply(caller, draft, spec)
        self.store.add(receiver)
        return receiver

    def update(self, caller: User, receiver_id: str, spec: ReceiverSpec) -> Receiver:
        require_admin(caller, WEBHOOK_RECEIVERS)
        receiver = self._apply(caller, self.get(caller, receiver_id), spec)
        self.store.save(receiver)
        return receiver

    def set_disabled(self, caller: User, receiver_id: str, disabled: bool) -> Receiver:
        return self.update(caller, receiver_id, ReceiverSpec(disabled=disabled))

    def delete(self, caller: User, receiver_id: str) -> None:
        require_admin(caller, WEBHOOK_RECEIVERS)
        self.get(caller, receiver_id)
        self.store.delete(receiver_id)
        self.limiter.forget(receiver_id)

    def validate(self, caller: User, receiver_id: str) -> Receiver:
        """Check that the receiver could start a job now; the first problem as an error."""
        receiver = self.get(caller, receiver_id)
        if receiver.disabled:
            raise ReceiverDisabled(f"The webhook receiver '{receiver.name}' is disabled.")
        user = self._run_as(receiver)
        self._notebook_item(user, receiver.item_id)
        return receiver

    def deliveries(self, caller: User, receiver_id: str, limit: int = 100) -> builtins.list[Delivery]:
        """The receiver's delivery log, newest first, for an administrator or its run-as user."""
        return self.store.deliveries(self.get(caller, receiver_id).receiver_id, limit)

    # -- the sink -----------------------------------------------------------------------------------
    def receive(self, receiver_id: str, event: Event) -> Job:
        """Verify an event and start its job; every outcome for a known receiver is logged."""
        receiver = self.store.get(receiver_id)
        if receiver is None:
            self.delivered("unknown_receiver")
            raise ReceiverNotFound(receiver_id)
        signature_ok = False
        try:
            if event.too_large:
                raise PayloadTooLarge(
                    f"The webhook body is larger than the {self.max_body_bytes} bytes this server accepts."
                )
            if not self.limiter.allow(receiver_id):
                raise RateLimited()
            if receiver.disabled:
                raise ReceiverDisabled()
            check_signature(receiver.secret, event.body, event.headers, receiver.signature_headers)
            signature_ok = True
            user = self._run_as(receiver)
            # The receiver's own parameters were parsed when it was defined; only the event's are new.
            event_parameters = parse_parameters(
                {
                    "webhook_payload": payload_of(event.body),
                    "webhook_headers": visible_headers(event.headers, receiver.signature_headers),
                }
            )
            parameters = NotebookParameters.trusted(receiver.parameters).merged(event_parameters)
            job = self.notebooks.execute(
                user,
                receiver.item_id,
                update_portal_item=False,
                parameters=parameters,
                webhook_receiver_id=receiver.receiver_id,
            )
        except NbJobsError as exc:
            self._log(receiver, event, signature_ok, reason=exc.message)
            self.delivered(delivery_outcome(exc))
            raise
        self._log(receiver, event, True, job_id=job.job_id)
        self.delivered("accepted")
        return job

    # -- rules --------------------------------------------------------------------------------------
    def _log(
        self, receiver: Receiver, event: Event, signature_ok: bool, *, job_id: str = "", reason: str = ""
    ) -> None:
        self.store.log(
            Delivery(
                delivery_id=uuid.uuid4().hex,
                receiver_id=receiver.receiver_id,
                received=self.clock(),
                source=event.source,
                signature_ok=signature_ok,
                job_id=job_id,
                reason=reason,
            )
        )

    def _run_as(self, receiver: Receiver) -> User:
        user = self.users.store.get(receiver.username)
        if user is None or user.disabled:
            raise RunAsUserDisabled(
                f"The user '{receiver.username}' this receiver runs notebooks as is disabled "
                "or no longer exists."
            )
        return user

    def _apply(self, caller: User, receiver: Receiver, spec: ReceiverSpec) -> Receiver:
        changes: dict[str, Any] = {"updated": self.clock()}
        if spec.name is not None:
            if not spec.name.strip():
                raise InvalidRequest("name cannot be empty.")
            changes["name"] = spec.name.strip()
        if spec.secret is not None:
            if len(spec.secret) != SECRET_LENGTH:
                raise InvalidRequest(
                    f"secret must be exactly {SECRET_LENGTH} characters long; got {len(spec.secret)}."
                )
            changes["secret"] = spec.secret
        if spec.signature_headers is not None:
            names = tuple(dict.fromkeys(h.strip().lower() for h in spec.signature_headers if h.strip()))
            bad = [n for n in names if not _HEADER_NAME.match(n)]
            if not names or bad:
                raise InvalidRequest(
                    f"signatureHeaders must be HTTP header names; got {', '.join(bad) or 'none'}."
                )
            changes["signature_headers"] = names
        if spec.parameters is not None:
            clash = sorted(set(spec.parameters) & set(RESERVED_PARAMETERS))
            if clash:
                raise InvalidRequest(f"parameters cannot set {', '.join(clash)}: the event fills them in.")
            changes["parameters"] = parse_parameters(spec.parameters).to_wire()
        if spec.disabled is not None:
            changes["disabled"] = spec.disabled
        if spec.api_token:
            try:
                changes["username"] = self.tokens.authenticate(spec.api_token).username
            except InvalidToken:
                raise InvalidRequest("apiToken is not a valid, unexpired token.") from None
        elif spec.username:
            changes["username"] = self.users.get(spec.username).username
        changed = dataclasses.replace(receiver, **changes)
        user = self._run_as(changed)
        require_privilege(user, CREATE_NOTEBOOKS)
        if spec.item_id is not None or "username" in changes:
            changed = dataclasses.replace(
                changed, item_id=self._notebook_item(user, spec.item_id or changed.item_id)
            )
        return changed

    def _notebook_item(self, user: User, item_id: str) -> str:
        item = self.items.get(user.principal(), item_id.strip())
        if item.type != NOTEBOOK_TYPE:
            raise InvalidRequest(
                f"Item {item_id} is a {item.type!r} item; a webhook receiver runs a Notebook item."
            )
        return item.item_id
