"""Real servers for the proxy's tests: a Jupyter-like upstream and an app mounting the proxy, each served
by uvicorn on 127.0.0.1 (random port) in its own thread and event loop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from nbjobs.web.proxy import Proxy, Upstream, UpstreamUnavailable

TOKEN = "upstream-token-7f3a"
KERNEL_PROTOCOL = "v1.kernel.websocket.jupyter.org"
SESSION_COOKIES = ("nbjobs_app", "nbjobs_token")
SMALL_MESSAGE = 2**20  # the max_message of the "small" container
BLOCKS = [hashlib.sha256(str(i).encode()).digest() * 2048 for i in range(4)]  # 4 x 64 KiB, all different


def blocks(total: int) -> Iterator[bytes]:
    """``total`` bytes of a known pattern, 64 KiB at a time (never the whole in memory)."""
    sent, i = 0, 0
    while sent < total:
        block = BLOCKS[i % len(BLOCKS)]
        piece = block if sent + len(block) <= total else block[: total - sent]
        sent += len(piece)
        i += 1
        yield piece


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """An ASGI app under a real uvicorn server in a background thread."""

    def __init__(self, app: ASGIApp, **config: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="error", log_config=None,
                timeout_graceful_shutdown=5, **config,
            )
        )  # fmt: skip
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "uvicorn did not stop"

    def run(self, coro: Any, timeout: float = 10) -> Any:
        """Run a coroutine in the server's event loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def task_count(self) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks())

        return self.run(count())


# ---- the upstream: what a Jupyter server does that the proxy must cope with -------------------------


class Recorder:
    """What the upstream's WebSocket endpoints saw, keyed by the test's ``key`` query parameter."""

    def __init__(self) -> None:
        self.closes: dict[str, tuple[int, str]] = {}
        self.events: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def _event(self, key: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(key, threading.Event())

    def closed(self, key: str, code: int, reason: str) -> None:
        self.closes[key] = (code, reason)
        self._event(key).set()

    def wait(self, key: str, timeout: float = 10) -> tuple[int, str]:
        assert self._event(key).wait(timeout), f"the upstream never saw {key!r} close"
        return self.closes[key]


RECORDER = Recorder()


class TokenRequired:
    """Like Jupyter with a token: a request without ``Authorization: token <TOKEN>`` is refused."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"token {TOKEN}".encode():
                if scope["type"] == "http":
                    await PlainTextResponse("bad token", status_code=403)(scope, receive, send)
                else:
                    await WebSocket(scope, receive, send).close()
                return
        await self.app(scope, receive, send)


def _seen(scope: Scope) -> dict[str, Any]:
    return {
        "path": scope["raw_path"].decode(),
        "query": scope["query_string"].decode(),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
    }


async def echo(request: Request) -> Response:
    body = await request.body()
    seen = _seen(request.scope) | {"method": request.method, "body": body.decode("latin-1")}
    response = JSONResponse(seen, status_code=int(request.query_params.get("status", "200")))
    response.headers.append("set-cookie", "_xsrf=abc; Path=/")
    response.headers.append("set-cookie", "other=1; Path=/")
    response.headers["x-upstream"] = "yes"
    # hop-by-hop ones, which must not reach the browser
    response.headers["keep-alive"] = "timeout=99"
    response.headers["proxy-authenticate"] = "Basic"
    response.headers["x-hop"] = "1"
    response.headers["connection"] = "x-hop"
    return response


async def upload(request: Request) -> Response:
    digest, count = hashlib.sha256(), 0
    async for chunk in request.stream():
        digest.update(chunk)
        count += len(chunk)
    length = request.headers.get("content-length")
    chunked = request.headers.get("transfer-encoding")
    return JSONResponse({"bytes": count, "sha256": digest.hexdigest(), "length": length, "chunked": chunked})


async def download(request: Request) -> Response:
    total = int(request.query_params["n"])

    async def body() -> AsyncIterator[bytes]:
        for piece in blocks(total):
            yield piece

    return StreamingResponse(body(), media_type="application/octet-stream")


ENDLESS_CLOSED = threading.Event()


async def endless(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                yield BLOCKS[0]
                await asyncio.sleep(0)
        finally:
            ENDLESS_CLOSED.set()

    return StreamingResponse(body(), media_type="application/octet-stream")


async def broken(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield BLOCKS[0]
        await asyncio.sleep(0.05)
        raise RuntimeError("the kernel died (a traceback the browser must not see)")

    return StreamingResponse(body(), media_type="application/octet-stream")


async def redirect(request: Request) -> Response:
    prefix = request.scope["raw_path"].decode().rsplit("/", 1)[0]
    if request.query_params.get("absolute"):
        return RedirectResponse(f"http://{request.headers['host']}{prefix}/lab?x=1", status_code=302)
    return RedirectResponse(f"{prefix}/lab", status_code=302)


def _origin_ok(ws: WebSocket) -> bool:
    """Jupyter's WebSocket origin check: no Origin is a script (allowed); else it must match Host."""
    origin = ws.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == ws.headers.get("host")


async def ws_echo(ws: WebSocket) -> None:
    if not _origin_ok(ws):
        await ws.close()  # 403
        return
    key = ws.query_params.get("key", "")
    quiet = "quiet" in ws.query_params  # a sink: keeps what it gets
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol=KERNEL_PROTOCOL if KERNEL_PROTOCOL in offered else None)
    for i in range(int(ws.query_params.get("ticks", "0"))):  # unprompted, like a kernel's iopub
        await ws.send_text(f"tick {i}")
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            RECORDER.closed(key, message.get("code", 1005), message.get("reason") or "")
            return
        if quiet:
            continue
        if message.get("text") is not None:
            await ws.send_text(message["text"])
        else:
            await ws.send_bytes(message["bytes"])


async def ws_headers(ws: WebSocket) -> None:
    if not _origin_ok(ws):
        await ws.close()
        return
    await ws.accept()
    await ws.send_json(_seen(ws.scope))
    with contextlib.suppress(WebSocketDisconnect):
        await ws.receive_text()


async def ws_close(ws: WebSocket) -> None:
    await ws.accept()
    await ws.close(int(ws.query_params["code"]), ws.query_params.get("reason", ""))


async def ws_big(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_bytes(b"x" * int(ws.query_params["n"]))
    key = ws.query_params.get("key", "")
    message = await ws.receive()
    RECORDER.closed(key, message.get("code", 1005), message.get("reason") or "")


async def ws_refuse(ws: WebSocket) -> None:
    await ws.send_denial_response(PlainTextResponse("UPSTREAM-SECRET refusal at 127.0.0.1", status_code=403))


P = "/nbjobs/notebooks/{cid}"
upstream_app = TokenRequired(
    Starlette(
        routes=[
            Route(P + "/echo", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
            Route(P + "/upload", upload, methods=["POST", "PUT"]),
            Route(P + "/download", download),
            Route(P + "/endless", endless),
            Route(P + "/broken", broken),
            Route(P + "/redirect", redirect),
            WebSocketRoute(P + "/ws/echo", ws_echo),
            WebSocketRoute(P + "/ws/headers", ws_headers),
            WebSocketRoute(P + "/ws/close", ws_close),
            WebSocketRoute(P + "/ws/big", ws_big),
            WebSocketRoute(P + "/ws/refuse", ws_refuse),
        ]
    )
)


# ---- the app in front: the lead's route, reduced to the transport ------------------------------------


def proxy_app(upstream_base: str, gone_base: str) -> Starlette:
    """/nbjobs/notebooks/<cid>/… to the upstream; cid "gone" points at a closed port, "small" has a
    1 MiB message limit."""

    def upstream_of(cid: str) -> Upstream:
        base = gone_base if cid == "gone" else upstream_base
        return Upstream(base=base, token=TOKEN, path_prefix=f"/nbjobs/notebooks/{cid}")

    async def http(request: Request) -> Response:
        try:
            return await request.app.state.proxy.http(
                request, upstream_of(request.path_params["cid"]), drop_cookies=SESSION_COOKIES
            )
        except UpstreamUnavailable as exc:
            return PlainTextResponse(str(exc), status_code=exc.status_code)

    async def websocket(ws: WebSocket) -> None:
        cid = ws.path_params["cid"]
        limit = SMALL_MESSAGE if cid == "small" else None
        extra = {"max_message": limit} if limit else {}
        await ws.app.state.proxy.websocket(ws, upstream_of(cid), drop_cookies=SESSION_COOKIES, **extra)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.proxy = Proxy(connect_timeout=5)
        yield
        await app.state.proxy.aclose()

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(
        routes=[
            Route(P + "/{path:path}", http, methods=methods),
            WebSocketRoute(P + "/{path:path}", websocket),
        ],
        lifespan=lifespan,
    )
