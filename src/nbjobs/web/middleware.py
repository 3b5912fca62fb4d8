"""ASGI middleware: security headers, the request-size limit and the last-resort guard that keeps
tracebacks in the log."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nbjobs.errors import PayloadTooLarge
from nbjobs.web.errors import error_response

MULTIPART_SLACK = 1024 * 1024  # form fields and boundaries around an upload of the largest allowed file
MAX_DRAIN = 1024 * 1024 * 1024  # read at most this much of an oversized body before answering

# Pages are server-rendered forms and a <pre> of JSON: no script, no third-party anything, never framed.
# A response that sets its own policy (the sandboxed notebook view) keeps it.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# FastAPI's Swagger UI (/<context>/docs) loads its bundle from jsDelivr and starts it with an inline script.
DOCS_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000"


def security_headers(scope: Scope, send: Send, context: str) -> Send:
    """``send`` adding the security headers to every response start: nosniff, no referrer, not framed,
    the restrictive CSP unless the response brings its own, ``no-store`` unless it sets a cache policy
    (every answer is per user and may carry a token), and HSTS over HTTPS."""
    docs = scope.get("path", "").startswith(f"/{context}/docs")
    https = scope.get("scheme") == "https"

    async def send_secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers.setdefault("X-Content-Type-Options", "nosniff")
            headers.setdefault("Referrer-Policy", "no-referrer")
            headers.setdefault("X-Frame-Options", "DENY")
            headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else PAGE_CSP)
            headers.setdefault("Cache-Control", "no-store")
            if https:
                headers.setdefault("Strict-Transport-Security", HSTS)
        await send(message)

    return send_secured


class Guard:
    """Adds the security headers to every response, refuses oversized bodies with the ArcGIS envelope
    and turns any unexpected exception into one."""

    def __init__(
        self, app: ASGIApp, *, max_body: int, context: str, max_request: int = 0, max_webhook: int = 0
    ) -> None:
        self.app = app
        self.max_body = max_body + MULTIPART_SLACK  # item uploads: addItem, addPart, update
        self.max_request = max_request or self.max_body  # every other request
        self.max_webhook = max(max_webhook + MULTIPART_SLACK, self.max_request)  # the sinks log oversize
        self.context = context

    def body_limit(self, scope: Scope) -> int:
        """The largest body this request may send: uploads and webhook events have their own limits."""
        path = scope.get("path", "")
        content = f"/{self.context}/sharing/rest/content/users/"
        if path.startswith(content) and path.rsplit("/", 1)[-1] in ("addItem", "addPart", "update"):
            return self.max_body
        if path.startswith(f"/{self.context}/notebooks/"):  # JupyterLab's uploads, through the proxy
            return self.max_body
        app = f"/{self.context}/app/notebooks/"  # the app's upload and new-version forms
        new_version = path.startswith(app) and path.endswith("/update") and path.count("/") == 5
        if path == app + "upload" or new_version:
            return self.max_body
        if path.startswith(f"/{self.context}/rest/events/webhooks/") or (
            path.startswith(f"/{self.context}/admin/notebooks/webhookReceivers/") and path.count("/") == 5
        ):
            return self.max_webhook
        return self.max_request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = security_headers(scope, send, self.context)
        request = Request(scope)
        limit = self.body_limit(scope)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            # Read the body before answering so the client sees our answer, not a reset connection.
            await _drain(receive, min(int(length), MAX_DRAIN))
            await error_response(request, _too_large(limit), self.context)(scope, receive, send)
            return
        started = False
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a chunked body, or one longer than its Content-Length
                    raise _too_large(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except Exception as exc:  # the guard of last resort: never a traceback or a 5xx to the client
            if started:
                raise
            await error_response(request, exc, self.context)(scope, receive, send)
        finally:
            await _close_uploads(scope)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the {limit} bytes this server accepts.")


async def _drain(receive: Receive, limit: int) -> None:
    seen = 0
    while seen < limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _close_uploads(scope: Scope) -> None:
    params = scope.get("state", {}).get("params")
    if params is None:
        return
    for upload in params.files.values():
        await upload.close()
