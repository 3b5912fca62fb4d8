"""The request id and the access line: pure ASGI, outermost, so every line a request causes carries it.

An incoming ``X-Request-Id`` is kept when it is sane (1-128 of ``A-Z a-z 0-9 . _ : -``; a proxy's id
then ties its log to ours), else a fresh one is made; either way it is on the log context for the
request and on the response header. One INFO line per request on ``nbjobs.access``: method, route
template (the path when no route matched), status and duration in ms.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nbjobs.telemetry.logs import request_context

HEADER = "X-Request-Id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            if _SANE.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class RequestLog:
    def __init__(self, app: ASGIApp, *, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.log = logger or logging.getLogger("nbjobs.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        started = time.perf_counter()
        status = 500  # what the server answers if the app ends without a response

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        with request_context(request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = getattr(scope.get("route"), "path", None)
                duration_ms = round((time.perf_counter() - started) * 1000, 1)
                self.log.info(
                    "%s %s %s %.1fms",
                    scope.get("method", ""),
                    route or scope.get("path", ""),
                    status,
                    duration_ms,
                    extra={
                        "method": scope.get("method", ""),
                        "route": route or "",
                        "path": scope.get("path", ""),
                        "status": status,
                        "duration_ms": duration_ms,
                    },
                )
