"""The interactive notebooks' reverse proxy: the transport between a browser and one user's Jupyter
server (bound to 127.0.0.1 with a random port and token, reached only through nbjobs).

This module decides nothing about who may reach what: the route authenticates the user, finds the
container, checks ``same_origin`` and then hands the request to ``Proxy.http`` or ``Proxy.websocket``.
What the transport guarantees:

* HTTP streams both ways (request body into httpx, ``aiter_raw`` back out), status, headers and body
  pass through, redirects are not followed; hop-by-hop headers are dropped, ``Host`` is the upstream's.
* Nothing that authenticates the browser to nbjobs reaches the upstream: the named session cookies,
  ``Authorization``, ``X-Esri-Authorization``, a ``token`` query parameter and ``Referer`` (it may hold
  one) are removed, and the upstream's own token is sent as ``Authorization: token …``. An ``Origin``
  the browser sent is replaced by the upstream's own origin: the route has already checked it, and a
  Jupyter server compares ``Origin`` with its ``Host`` (127.0.0.1:PORT).
* An upstream that cannot be reached raises ``UpstreamUnavailable`` before anything is sent to the
  browser (the route renders it, a 502); its error text stays in the server log. A response that breaks
  off mid-stream aborts the browser's connection, so a truncated body is never taken for a whole one.
* A WebSocket is opened upstream first, with the browser's subprotocols, then accepted with the one the
  upstream chose; an upstream that refuses is answered with a bare 502 before accept. Frames are relayed
  both ways, close codes and reasons pass through, a message over ``max_message`` closes both sides
  with 1009, and when either side ends the other is closed and both relay tasks end.

Note for the browser side: uvicorn refuses WebSocket messages over its own ``ws_max_size`` (16 MiB by
default) with 1009 before the app sees them, so ``max_message`` above it needs ``ws_max_size`` raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from http.cookiejar import Cookie, CookieJar
from typing import cast
from urllib.parse import unquote_to_bytes, urlsplit

import httpx
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.frames import EXTERNAL_CLOSE_CODES
from websockets.typing import Subprotocol

log = logging.getLogger(__name__)

MAX_MESSAGE = 16 * 2**20  # bytes; ArcGIS' webSocketSize is in MiB
CONNECT_TIMEOUT = 10.0  # seconds to reach the upstream (TCP connect, or the WebSocket handshake)
UPSTREAM_QUEUE = 4  # messages the upstream WebSocket may buffer ahead of the browser (x max_message)

# RFC 9110 7.6.1, plus what a proxy must never forward; the Proxy-* family is matched by prefix.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection"}
)
CREDENTIALS = frozenset({"authorization", "x-esri-authorization"})
# Request headers never passed on: the upstream gets its own Host, Origin, token; Referer may carry a
# token in its query; Expect is answered by nbjobs' server, not the upstream's.
REQUEST_DROPPED = CREDENTIALS | {"host", "origin", "referer", "expect", "cookie"}
# What the WebSocket client writes itself for the upstream handshake.
HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
        "user-agent",
        "content-length",
    }
)
RESPONSE_DROPPED = frozenset({"date", "server"})  # nbjobs' server sends its own
DEFAULT_PORTS = {"http": 80, "https": 443}
TOO_BIG = 1009
UNAVAILABLE = "The notebook server is not reachable."


class UpstreamUnavailable(Exception):
    """The upstream could not be reached or gave no answer (refused, gone, timed out, broke off before
    the status line). Raised by ``Proxy.http`` before any byte went to the browser; the message is short
    and holds nothing of the upstream's error (that is in the log): render it as a 502."""

    status_code = 502

    def __init__(self, message: str = UNAVAILABLE) -> None:
        super().__init__(message)


class UpstreamBroken(Exception):
    """An upstream response broke off after its status line was relayed: raised into the ASGI server,
    which then drops the browser's connection (the browser sees an incomplete response)."""


@dataclass(frozen=True)
class Upstream:
    """One Jupyter server as the proxy reaches it."""

    base: str  # "http://127.0.0.1:PORT" (or a worker's reachable address), no path
    token: str  # the Jupyter server's token, sent as "Authorization: token <token>"
    path_prefix: str  # the path the upstream serves under (its base_url), e.g. "/nbjobs/notebooks/<cid>"

    @property
    def origin(self) -> str:
        return self.base.rstrip("/")


class Proxy:
    """The transport, one per app: owns one connection pool to every upstream. Close it at shutdown
    (``await proxy.aclose()`` in the app's lifespan)."""

    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.connect_timeout = connect_timeout
        # No read/write timeout: downloads, uploads and long polls last as long as they last.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=connect_timeout, pool=connect_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32, keepalive_expiry=30),
            follow_redirects=False,
            trust_env=False,  # never through HTTP(S)_PROXY, never .netrc credentials
            cookies=_NoCookies(),  # one client for every user: it must never keep an upstream's cookie
        )
        self._client.headers.clear()  # no Accept/User-Agent/Accept-Encoding of httpx's own: the browser's

    async def aclose(self) -> None:
        await self._client.aclose()

    async def http(self, request: Request, upstream: Upstream, *, drop_cookies: Iterable[str]) -> Response:
        """Relay one HTTP request to ``upstream`` and return its streamed response (any status, redirects
        included). Raises ``UpstreamUnavailable`` when there is no answer. A path that leaves
        ``upstream.path_prefix`` (dot segments) is answered 404 without reaching the upstream."""
        url = target(upstream, request.scope, "http")
        if url is None:
            return PlainTextResponse("Not Found", status_code=404)
        headers = forward_headers(request.headers, upstream, drop_cookies, exclude=frozenset())
        headers.append(("host", url.netloc.decode("ascii")))
        has_body = "transfer-encoding" in request.headers or request.headers.get("content-length", "0") != "0"
        outgoing = self._client.build_request(
            request.method, url, headers=headers, content=request.stream() if has_body else None
        )
        try:
            answer = await self._client.send(outgoing, stream=True)
        except ClientDisconnect:  # the browser went away during its upload: nobody to answer
            return Response(status_code=400)
        except httpx.TransportError as err:
            log.warning("notebook server %s: no answer to %s: %r", upstream.origin, request.method, err)
            raise UpstreamUnavailable() from err
        return _Relayed(answer, upstream)

    async def websocket(
        self,
        ws: WebSocket,
        upstream: Upstream,
        *,
        drop_cookies: Iterable[str],
        max_message: int = MAX_MESSAGE,
    ) -> None:
        """Relay one WebSocket (not yet accepted) until either side closes. The upstream handshake comes
        first; when it fails (refused, gone, status other than 101) the browser gets a bare 502 before
        accept (a 403 on a server without the denial-response extension)."""
        url = target(upstream, ws.scope, "ws")
        if url is None:
            await _deny(ws, 404, "Not Found")
            return
        headers = forward_headers(ws.headers, upstream, drop_cookies, exclude=HANDSHAKE)
        offered = cast(list[Subprotocol], list(ws.scope.get("subprotocols") or ()))
        try:
            conn = await connect(
                str(url),
                subprotocols=offered or None,
                additional_headers=headers,
                user_agent_header=ws.headers.get("user-agent"),
                proxy=None,  # never through a system proxy
                open_timeout=self.connect_timeout,
                max_size=max_message,
                max_queue=UPSTREAM_QUEUE,
            )
        except (OSError, TimeoutError, WebSocketException) as err:
            log.warning("notebook server %s: WebSocket refused: %r", upstream.origin, err)
            await _deny(ws, 502, UNAVAILABLE)
            return
        try:
            await ws.accept(subprotocol=conn.subprotocol)
            await _relay(ws, conn, max_message)
        except (OSError, WebSocketDisconnect):  # the browser left during the accept
            pass
        finally:
            await conn.close()


def same_origin(headers: Headers, scheme: str, host: str) -> bool:
    """True when the request's one ``Origin`` header names the server itself: ``scheme`` (http, https,
    or ws/wss for a WebSocket) and ``host`` (the Host the browser used, with its port if any) as the
    browser sees them, default ports filled in, case-insensitive. Missing, ``null``, several or malformed
    origins are not same-origin."""
    values = headers.getlist("origin")
    if len(values) != 1:
        return False
    own_scheme = {"ws": "http", "wss": "https"}.get(scheme.lower(), scheme.lower())
    theirs = _origin_key(values[0].strip())
    return theirs is not None and theirs == _origin_key(f"{own_scheme}://{host}")


def _origin_key(text: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    if parts.path or parts.query or parts.fragment or "#" in text or "?" in text:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def target(upstream: Upstream, scope: Scope, scheme: str) -> httpx.URL | None:
    """The upstream URL for this request: its raw path unchanged (dot segments resolved, as the
    browser would), its query without ``token``; None when the path is not under the upstream's
    prefix."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    query = scrub_query(scope.get("query_string", b""))
    url = httpx.URL(upstream.origin).copy_with(raw_path=raw_path + (b"?" + query if query else b""))
    prefix = upstream.path_prefix.rstrip("/")
    inside = url.path == prefix or url.path.startswith(prefix + "/")
    if not inside or ".." in url.path.split("/"):  # %2e%2e, resolved by the upstream, not here
        return None
    if scheme == "ws":
        url = url.copy_with(scheme="wss" if url.scheme == "https" else "ws")
    return url


def scrub_query(query: bytes) -> bytes:
    """The query string without any ``token`` parameter (any case); the others byte for byte."""
    kept = [part for part in query.split(b"&") if _param_name(part) != b"token"]
    return b"&".join(kept) if any(kept) else b""


def _param_name(part: bytes) -> bytes:
    return unquote_to_bytes(part.split(b"=", 1)[0].replace(b"+", b" ")).strip().lower()


def forward_headers(
    headers: Headers, upstream: Upstream, drop_cookies: Iterable[str], *, exclude: frozenset[str]
) -> list[tuple[str, str]]:
    """The browser's request headers as the upstream gets them: no hop-by-hop header (nor one named in
    ``Connection``), no credential, the cookies in ``drop_cookies`` removed, the upstream's token added,
    ``Origin`` (when sent) the upstream's own."""
    named = {token.strip().lower() for value in headers.getlist("connection") for token in value.split(",")}
    out: list[tuple[str, str]] = []
    for name, value in headers.items():
        lower = name.lower()
        if lower in REQUEST_DROPPED or lower in exclude or _hop_by_hop(lower) or lower in named:
            continue
        out.append((lower, value))
    cookie = kept_cookies(headers.getlist("cookie"), frozenset(drop_cookies))
    if cookie:
        out.append(("cookie", cookie))
    if "origin" in headers:
        out.append(("origin", upstream.origin))
    out.append(("authorization", f"token {upstream.token}"))
    return out


def kept_cookies(values: Sequence[str], dropped: frozenset[str]) -> str:
    """One Cookie header's value from the browser's, without the cookies named in ``dropped``."""
    pairs = [pair.strip() for value in values for pair in value.split(";")]
    return "; ".join(p for p in pairs if p and p.split("=", 1)[0].strip() not in dropped)


def _hop_by_hop(name: str) -> bool:
    return name in HOP_BY_HOP or name.startswith("proxy-")


class _NoCookies(CookieJar):
    """A cookie jar that keeps nothing: the browser holds the upstream's cookies, not the proxy."""

    def set_cookie(self, cookie: Cookie) -> None:
        pass

    def extract_cookies(self, response: object, request: object) -> None:
        pass


class _Relayed(StreamingResponse):
    """An upstream response on its way to the browser; the upstream connection is released at the end
    whatever happens (done, browser gone, upstream broken)."""

    def __init__(self, answer: httpx.Response, upstream: Upstream) -> None:
        super().__init__(_body(answer), status_code=answer.status_code)
        self.answer = answer
        named = {
            token.strip().lower()
            for value in answer.headers.get_list("connection")
            for token in value.split(",")
        }
        self.raw_headers = []
        for raw_name, raw_value in answer.headers.raw:
            name = raw_name.decode("latin-1").lower()
            if _hop_by_hop(name) or name in named or name in RESPONSE_DROPPED:
                continue
            if name == "location":
                raw_value = _local_location(raw_value, upstream)
            self.raw_headers.append((name.encode("latin-1"), raw_value))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.answer.aclose()


async def _body(answer: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    except httpx.TransportError as err:
        raise UpstreamBroken("the notebook server's response broke off") from err


def _local_location(value: bytes, upstream: Upstream) -> bytes:
    """An absolute redirect to the upstream's own address, as a path (the browser cannot reach it)."""
    origin = upstream.origin.encode("latin-1")
    if value.lower().startswith(origin.lower()) and value[len(origin) : len(origin) + 1] in (b"", b"/", b"?"):
        return value[len(origin) :] or b"/"
    return value


async def _deny(ws: WebSocket, status: int, text: str) -> None:
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(PlainTextResponse(text, status_code=status))
    else:
        await ws.close()  # before accept: a 403


@dataclass(frozen=True)
class _End:
    """How a relay direction ended: who ended it, and the close to pass to the other side."""

    by: str  # "browser" | "upstream" | "too-big" (a browser message over the limit)
    code: int
    reason: str


async def _relay(ws: WebSocket, conn: ClientConnection, max_message: int) -> None:
    async def from_browser() -> _End:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return _End("browser", int(message.get("code") or 1005), message.get("reason") or "")
            text: str | None = message.get("text")
            payload: str | bytes = text if text is not None else message.get("bytes") or b""
            if _size(payload) > max_message:
                return _End("too-big", TOO_BIG, "message too big")
            try:
                await conn.send(payload)
            except ConnectionClosed as closed:
                return _upstream_end(closed)

    async def from_upstream() -> _End:
        while True:
            try:
                payload = await conn.recv()
            except ConnectionClosed as closed:
                return _upstream_end(closed)
            key = "text" if isinstance(payload, str) else "bytes"
            try:
                await ws.send({"type": "websocket.send", key: payload})
            except (OSError, WebSocketDisconnect):
                return _End("browser", 1006, "")

    tasks = [asyncio.create_task(from_browser()), asyncio.create_task(from_upstream())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        end = next(iter(done)).result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if end.by in ("browser", "too-big"):
        await conn.close(_sendable(end.code), end.reason)
    if end.by in ("upstream", "too-big"):
        await _close_browser(ws, _sendable(end.code), end.reason)


def _upstream_end(closed: ConnectionClosed) -> _End:
    """The close the browser gets: ours when the client failed the connection (1009 for an oversized
    upstream message, 1011 for a ping timeout), else the upstream's; 1011 when the upstream vanished."""
    if closed.sent is not None and not closed.rcvd_then_sent:
        return _End("upstream", closed.sent.code, closed.sent.reason)
    if closed.rcvd is not None:
        return _End("upstream", closed.rcvd.code, closed.rcvd.reason)
    return _End("upstream", 1011, "notebook server went away")


def _sendable(code: int) -> int:
    """A close code that may go in a close frame: 1005 (none given) becomes 1000, 1006 (connection
    lost) and anything else reserved 1001."""
    if code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000:
        return code
    return 1000 if code == 1005 else 1001


async def _close_browser(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state != WebSocketState.CONNECTED or ws.client_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):  # the browser is already gone
        await ws.close(code, reason.encode("utf-8")[:123].decode("utf-8", "ignore"))


def _size(payload: str | bytes) -> int:
    if isinstance(payload, bytes) or payload.isascii():
        return len(payload)
    return len(payload.encode("utf-8"))
