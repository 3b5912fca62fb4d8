"""ASGI middleware: the request-size limit and the last-resort guard that keeps tracebacks in the log."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nbjobs.errors import PayloadTooLarge
from nbjobs.web.errors import error_response

MULTIPART_SLACK = 1024 * 1024  # form fields and boundaries around an upload of the largest allowed file
MAX_DRAIN = 1024 * 1024 * 1024  # read at most this much of an oversized body before answering


class Guard:
    """Refuses oversized bodies with the ArcGIS envelope and turns any unexpected exception into one."""

    def __init__(self, app: ASGIApp, *, max_body: int, context: str) -> None:
        self.app = app
        self.max_body = max_body + MULTIPART_SLACK
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            # Read the body before answering so the client sees our answer, not a reset connection.
            await _drain(receive, min(int(length), MAX_DRAIN))
            await error_response(request, _too_large(self.max_body), self.context)(scope, receive, send)
            return
        started = False
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _too_large(self.max_body)
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
