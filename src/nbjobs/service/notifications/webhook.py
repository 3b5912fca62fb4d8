"""The webhook channel: one signed HTTP POST of a JSON body to a checked, pinned address.

The body is signed as the inbound webhook receivers verify it (``service/automation/webhooks.py``):
``X-Nbjobs-Signature-256: sha256=<hex HMAC-SHA256 of the raw body under the rule's secret>``. Redirects
are not followed (a 3xx is a failed attempt, logged with its Location), at most ``MAX_RESPONSE_BYTES`` of
an answer are read, and every attempt has a connect/read timeout and an overall deadline.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import ssl
import time
from dataclasses import dataclass

from nbjobs.service.notifications.targets import AllowList, Resolver, check_url, system_resolver

SIGNATURE_HEADER = "X-Nbjobs-Signature-256"
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "nbjobs-notifications/1"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str
    permanent: bool = False  # retrying cannot help (the target is refused)


def sign(secret: str, body: bytes) -> str:
    """GitHub's form, one of those ``service.automation.webhooks.check_signature`` accepts."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post(
    url: str,
    body: bytes,
    *,
    secret: str,
    idempotency_key: str,
    event: str,
    allow: AllowList,
    timeout: float,
    resolve: Resolver = system_resolver,
    verify_tls: bool = True,
) -> Outcome:
    """POST ``body`` to ``url``; an Outcome, never an exception for what the network or the receiver do."""
    from nbjobs.errors import InvalidNotificationRule

    try:
        target = check_url(url, allow, resolve)
    except InvalidNotificationRule as exc:
        return Outcome(False, str(exc), permanent="points at" in str(exc))
    deadline = time.monotonic() + timeout
    conn: http.client.HTTPConnection
    try:
        sock = socket.create_connection((target.address, target.port), timeout=timeout)
        if target.scheme == "https":
            context = ssl.create_default_context()
            if not verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=target.host)
            conn = http.client.HTTPSConnection(target.host, target.port, timeout=timeout)
        else:
            conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        conn.sock = sock  # pinned: the checked address, never a second lookup
        try:
            conn.request(
                "POST",
                target.path,
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                    SIGNATURE_HEADER: sign(secret, body),
                    "Idempotency-Key": idempotency_key,
                    "X-Nbjobs-Event": event,
                },
            )
            response = conn.getresponse()
            answer = _read_capped(response, deadline)
        finally:
            conn.close()
    except TimeoutError:
        return Outcome(False, f"timed out after {timeout:g} s")
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    status = response.status
    if 200 <= status < 300:
        return Outcome(True, f"HTTP {status}")
    if 300 <= status < 400:
        location = response.getheader("Location", "")
        return Outcome(False, f"HTTP {status}: redirect to {location!r} not followed")
    text = answer.decode("utf-8", "replace").strip()[:200]
    return Outcome(False, f"HTTP {status} {response.reason}" + (f": {text}" if text else ""))


def _read_capped(response: http.client.HTTPResponse, deadline: float) -> bytes:
    """At most MAX_RESPONSE_BYTES of the answer, by the overall deadline; the rest is never read."""
    chunks = []
    size = 0
    while size < MAX_RESPONSE_BYTES:
        if time.monotonic() > deadline:
            raise TimeoutError
        chunk = response.read1(min(16384, MAX_RESPONSE_BYTES - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
