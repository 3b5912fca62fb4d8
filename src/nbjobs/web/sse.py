"""Server-Sent Events: the wire format, and a response that stops its stream the moment the client goes.

Starlette's StreamingResponse notices a client that went away only at its next write under ASGI 2.4
servers (uvicorn); a job stream may be silent for a heartbeat's length, so ``EventStreamResponse``
always listens for ``http.disconnect`` beside the stream and cancels the stream when it comes. The
stream's ``finally`` then drops its subscription: nothing of a dropped client stays behind.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

HEADERS = {
    "Cache-Control": "no-cache, no-store",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def event(name: str, data: Any, *, event_id: int | str | None = None) -> str:
    """One event; ``data`` as compact JSON on one line (JSON never holds a raw newline)."""
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    return "\n".join(lines) + "\n\n"


def comment(text: str) -> str:
    return f": {text}\n\n"


def retry(milliseconds: int) -> str:
    return f"retry: {milliseconds}\n\n"


class EventStreamResponse(StreamingResponse):
    def __init__(self, content: AsyncIterator[str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                with contextlib.suppress(OSError):  # the client went away mid-write
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(stream)
            group.start_soon(watch)
