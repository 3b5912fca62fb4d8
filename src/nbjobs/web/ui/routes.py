"""The app at ``/<context>/app``: signing in and out, its static files, and the page routers of
``jobs.py``, ``notebooks.py`` and the others (``interactive.py``: Open in JupyterLab, Running notebooks).
The security model is in ``session.py`` and docs/app.md."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import NbJobsError
from nbjobs.web.deps import Form, Nb
from nbjobs.web.routes.lab_proxy import set_lab_cookie
from nbjobs.web.routes.tokens import client_address
from nbjobs.web.ui import admin, interactive, jobs, notebooks, tasks, versions, webhooks, webtools
from nbjobs.web.ui.pages import APP_HEADERS, STATIC, base, page, redirect, render
from nbjobs.web.ui.session import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    CrossSiteRefused,
    Visitor,
    clear_session,
    login_csrf_ok,
    new_login_csrf,
    set_login_cookie,
    set_session,
)

router = APIRouter(prefix="/app", include_in_schema=False)
STATIC_TYPES = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}


def _notebooks_path(request: Request) -> str:
    return f"/{request.app.state.services.settings.server.context}/notebooks/"


def _safe_next(request: Request, target: str) -> str:
    """Where to go after signing in: a path of this app, or a JupyterLab page through nbjobs' proxy (which
    sends a browser without the lab cookie here first), only (never another site, nor ``//host``)."""
    app = base(request)
    ours = target.startswith(app + "/") or target.startswith(_notebooks_path(request))
    if ours and not target.startswith("//") and "\\" not in target:
        return target
    return f"{app}/jobs"


@router.get("/")
def app_root(request: Request) -> Response:
    return redirect(f"{base(request)}/jobs")


def _signin_form(request: Request, *, message: str = "", status: int = 200, username: str = "") -> Response:
    value = request.cookies.get(LOGIN_COOKIE) or new_login_csrf()
    target = _safe_next(request, request.query_params.get("next", ""))
    if not message and request.query_params.get("expired"):
        message = "Your session ended; sign in again."
    response = render(request, "signin.html", status_code=status, nav="signin", login_csrf=value,
                      csrf_field=CSRF_FIELD, target=target, message=message, username=username)  # fmt: skip
    set_login_cookie(response, request, request.app.state.services.settings.server.context, value)
    return response


@router.get("/signin")
def signin_page(request: Request) -> Response:
    return _signin_form(request)


@router.post("/signin")
def signin(request: Request, nb: Nb, params: Form) -> Response:
    """Check the password with the server's users, issue a token, set the session cookies."""
    if not login_csrf_ok(request, params):
        if params.format != "html":
            raise CrossSiteRefused()
        return _signin_form(request, status=403, message=CrossSiteRefused().message)
    username = params.text("username")
    try:
        user = nb.users.authenticate(
            username, params.values.get("password", ""), address=client_address(request)
        )
    except NbJobsError as exc:
        if params.format != "html":
            raise
        return _signin_form(
            request, status=400, message=" ".join(exc.details) or exc.message, username=username
        )
    issued = nb.tokens.issue(user, None, client="nbjobs app")
    target = _safe_next(request, params.text("next"))
    response = redirect(target)
    set_session(response, request, nb.settings.server.context, issued)
    if target.startswith(_notebooks_path(request)):  # back to JupyterLab: the proxy reads the lab cookie
        set_lab_cookie(response, request, nb, issued.token)
    return response


@router.post("/signout")
@page
def signout(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    visit.signed_in()
    if visit.via_cookie:  # the browser session's token; a token sent explicitly is its holder's to revoke
        nb.tokens.revoke(visit.token)
    response = redirect(f"{base(request)}/signin")
    clear_session(response, request, nb.settings.server.context)
    return response


def _static(name: str) -> Response:
    headers = {**APP_HEADERS, "Cache-Control": "public, max-age=300"}
    return Response((STATIC / name).read_bytes(), media_type=STATIC_TYPES[name], headers=headers)


@router.get("/static/app.css")
def app_css() -> Response:
    return _static("app.css")


@router.get("/static/app.js")
def app_js() -> Response:
    return _static("app.js")


router.include_router(jobs.router)
router.include_router(notebooks.router)
router.include_router(versions.router)
router.include_router(interactive.router)
router.include_router(tasks.router)
router.include_router(webtools.router)
router.include_router(webhooks.router)
router.include_router(admin.router)
