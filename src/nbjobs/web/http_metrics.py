"""``HttpMetrics``: a pure ASGI middleware counting every HTTP request by route *template*, method and
status, with its latency (``nbjobs_http_requests_total``, ``nbjobs_http_request_duration_seconds``).

The route label is the template the request matched (``/arcgis/admin/notebooks/jobs/{job_id}``), never
the raw path, so ids never become label values. A request answered before routing (an oversized body
refused by the guard) is matched against the routes here; a path no route knows is ``unmatched``. Methods
outside the HTTP set are ``other``. The latency runs until the response is sent (or the app failed).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence

from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nbjobs.telemetry.metrics import UNMATCHED, Metrics

METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


class RouteTemplates:
    """The full template of every route of the app (``/arcgis`` + the router prefixes + the path), built
    once on first use, by walking the routes into included routers."""

    def __init__(self, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self._routes = routes
        self._by_route: dict[int, str] | None = None  # id(route object) -> its full template
        self._patterns: list[tuple[re.Pattern[str], str]] = []

    def _build(self) -> dict[int, str]:
        by_route: dict[int, str] = {}
        patterns: list[tuple[re.Pattern[str], str]] = []
        for route, template in _walk(self._routes(), ""):
            by_route[id(route)] = template
            patterns.append((compile_path(template)[0], template))
        self._patterns = patterns
        self._by_route = by_route
        return by_route

    def of(self, scope: Scope) -> str:
        """The template of the route that answered (or would have answered) this request."""
        by_route = self._by_route if self._by_route is not None else self._build()
        route = scope.get("route")
        if route is not None and id(route) in by_route:
            return by_route[id(route)]
        path = scope.get("path", "")
        for pattern, template in self._patterns:  # answered before routing (the guard), or unknown
            if pattern.match(path):
                return template
        return UNMATCHED


def _walk(routes: Sequence[BaseRoute], prefix: str) -> Iterator[tuple[BaseRoute, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps included routers as such
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _walk(included.routes, prefix + str(getattr(context, "prefix", "")))
            continue
        path = getattr(route, "path", None)
        if isinstance(path, str):
            yield route, prefix + path


class HttpMetrics:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = RouteTemplates(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # what the server sends when the app fails before starting a response
        stream_started = 0.0  # an event stream's latency is until it starts: it then stays open for long

        async def watched_send(message: Message) -> None:
            nonlocal status, stream_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = dict(message.get("headers") or ())
                if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                    stream_started = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            method = scope.get("method", "")
            self.metrics.http_request(
                self.templates.of(scope),
                method if method in METHODS else "other",
                status,
                (stream_started or time.perf_counter()) - began,
            )
