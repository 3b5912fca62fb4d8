"""Talking to a Jupyter kernel over its WebSocket (``…/api/kernels/<id>/channels``) as JupyterLab does,
without a browser: through nbjobs' proxy or straight to a Jupyter server."""

from __future__ import annotations

import asyncio
import json
import ssl as ssl_module
import uuid
from typing import Any

from websockets.asyncio.client import connect


def execute_request(code: str) -> tuple[str, str]:
    """(msg_id, the execute_request message as JSON text)."""
    msg_id = uuid.uuid4().hex
    message = {
        "header": {"msg_id": msg_id, "username": "", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3", "date": ""},  # fmt: skip
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},  # fmt: skip
    }  # fmt: skip
    return msg_id, json.dumps(message)


async def execute(
    url: str,
    headers: dict[str, str],
    code: str,
    *,
    until: str = "idle",
    ssl: ssl_module.SSLContext | None = None,
) -> str:
    """Send ``code`` and read replies until the kernel reports ``until`` for it ("idle": it ran, "busy":
    it started and is left running); returns what it printed meanwhile."""
    extra: dict[str, Any] = {"ssl": ssl} if ssl is not None else {}
    async with connect(url, additional_headers=headers, **extra) as ws:
        msg_id, message = execute_request(code)
        await ws.send(message)
        printed = ""
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if reply["msg_type"] == "stream":
                printed += reply["content"]["text"]
            if reply["msg_type"] == "status" and reply["content"]["execution_state"] == until:
                return printed
