"""Rendering the app's pages: the Jinja environment, the page headers, and the one wrapper that turns an
error into a page (or, with ``f=json``, into the ArcGIS envelope the API answers)."""

from __future__ import annotations

import asyncio
import datetime
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from nbjobs.errors import InvalidToken, NbJobsError, TokenRequired
from nbjobs.web.ui.session import CrossSiteRefused, clear_session

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
# Scripts and styles come only from this server's own /app/static; the streams are same-origin; the only
# frame is the sandboxed notebook view.
APP_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# same-origin: the app's POSTs carry Origin (with no-referrer a browser sends "Origin: null")
APP_HEADERS = {"Content-Security-Policy": APP_CSP, "Referrer-Policy": "same-origin"}
_F = TypeVar("_F", bound=Callable[..., Any])


def environment(request: Request) -> jinja2.Environment:
    """The app's template environment, made once per ASGI app (kept on its state)."""
    env: jinja2.Environment | None = getattr(request.app.state, "ui_templates", None)
    if env is None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["when"] = when
        env.filters["duration"] = duration
        request.app.state.ui_templates = env
    return env


def when(ms: int | None) -> str:
    """An epoch-ms time as UTC text ("" for 0)."""
    if not ms:
        return ""
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(ms: int | None) -> str:
    """Milliseconds as "1 h 02 min", "3 min 04 s" or "5.2 s"."""
    if ms is None or ms < 0:
        return ""
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def base(request: Request) -> str:
    """The app's root path, ``/<context>/app``."""
    return f"/{request.app.state.services.settings.server.context}/app"


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    ctx = request.app.state.services.settings.server.context
    values.setdefault("user", None)
    values.setdefault("csrf", "")
    values.setdefault("nav", "")
    body = environment(request).get_template(template).render(app=f"/{ctx}/app", context=ctx, **values)
    return HTMLResponse(body, status_code=status_code, headers=APP_HEADERS)


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303, headers=APP_HEADERS)


def signin_url(request: Request) -> str:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return f"{base(request)}/signin?next={quote(target, safe='')}"


def error_page(request: Request, exc: NbJobsError) -> Response:
    """An error as the app shows it: sign in again for 498/499, else a page with the message."""
    if isinstance(exc, TokenRequired | InvalidToken) and request.method == "GET":
        response = redirect(signin_url(request) + ("&expired=1" if isinstance(exc, InvalidToken) else ""))
        if isinstance(exc, InvalidToken):
            clear_session(response, request, request.app.state.services.settings.server.context)
        return response
    status = {498: 401, 499: 401, 403: 403, 404: 404}.get(exc.code, 400)
    if isinstance(exc, CrossSiteRefused):
        status = 403
    title = "Not found" if status == 404 else "Refused" if status == 403 else "Something is wrong"
    messages = [exc.message, *exc.details]
    return render(request, "error.html", status_code=status, title=title, messages=messages)


def _wants_json(request: Request) -> bool:
    params = request.scope.get("state", {}).get("params")
    return params is not None and params.format != "html"


def page(endpoint: _F) -> _F:
    """Wrap a page endpoint: an NbJobsError becomes the app's error page, or with ``f=json`` goes on to
    the app-wide handler (the ArcGIS envelope, as every API route answers)."""
    if asyncio.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            request: Request = kwargs["request"]
            try:
                return await endpoint(*args, **kwargs)
            except NbJobsError as exc:
                if _wants_json(request):
                    raise
                return error_page(request, exc)

        return run_async  # type: ignore[return-value]

    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        request: Request = kwargs["request"]
        try:
            return endpoint(*args, **kwargs)
        except NbJobsError as exc:
            if _wants_json(request):
                raise
            return error_page(request, exc)

    return run  # type: ignore[return-value]
