"""Who is visiting the app, and whether a state-changing request may be believed.

The app signs in with the server's own tokens and keeps the token in two ``HttpOnly`` cookies:

* ``nbjobs_app`` (path ``/<context>/app``, ``SameSite=Lax``): the app's session. Lax, so a link to a job
  page from a mail or a chat opens signed in; safe, because no app GET changes anything.
* ``nbjobs_token`` (path ``/<context>/admin``, ``SameSite=Strict``): the API's browser cookie, which
  ``deps.token_of`` reads on GET only. The pages need it for the event streams (an ``EventSource``
  cannot send a header), the sandboxed notebook frame and the ``.ipynb`` download. It stays Strict
  because some API GETs act (``executeNotebook``, ``cancel``).

Every POST the cookie authenticates must carry the CSRF token (a form field ``csrf``, or the
``X-CSRF-Token`` header) and come from this origin (``Origin``, else ``Referer``). The CSRF token is an
HMAC of the session token keyed by the token itself: it needs no server-side state and no server key
(so it holds across API servers and restarts), cannot be computed without the HttpOnly token, and dies
with it at sign-out. A request that sends the token explicitly (a Bearer header, ``token=``) is not
ambient authority, as in the API, and needs neither. Signing in, before any session exists, uses a
double-submit value: a random ``nbjobs_app_login`` cookie the form must repeat, plus the origin check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import NbJobsError, PermissionDenied, TokenRequired
from nbjobs.models.accounts import User
from nbjobs.service.accounts.tokens import IssuedToken
from nbjobs.web.deps import Form, explicit_token, get_services
from nbjobs.web.params import Params
from nbjobs.web.render import TOKEN_COOKIE

APP_COOKIE = "nbjobs_app"
LOGIN_COOKIE = "nbjobs_app_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_CSRF_LABEL = b"nbjobs app csrf v1"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class CrossSiteRefused(PermissionDenied):
    """Refused: this request did not come from a page of this server (missing or wrong CSRF token, or
    another origin). Reload the page and try again."""


def csrf_of(token: str) -> str:
    """The CSRF token of a session: an HMAC of the session token, keyed by it."""
    return hmac.new(token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def own_origin(request: Request) -> str:
    """This server's origin as the browser sees it (scheme, host and port of the request)."""
    return f"{request.url.scheme}://{request.url.netloc}"


def same_origin(request: Request) -> bool:
    """True when ``Origin`` (or, without it, ``Referer``) names this server; False when neither is sent:
    every browser sends ``Origin`` on a POST, and the app's pages keep ``Referer`` same-origin."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer", "")
        parts = urlsplit(referer)
        if not parts.scheme or not parts.netloc:
            return False
        origin = f"{parts.scheme}://{parts.netloc}"
    return hmac.compare_digest(origin.lower(), own_origin(request).lower())


@dataclass(frozen=True)
class Visit:
    """One request to the app: the user (if the token is good), the session's CSRF token for the page's
    forms, and why the request is not signed in or not believed (``problem``)."""

    user: User | None
    token: str
    csrf: str
    problem: NbJobsError | None
    via_cookie: bool
    wants_json: bool

    def signed_in(self) -> User:
        """The user, else the reason (TokenRequired 499, InvalidToken 498, CrossSiteRefused 403)."""
        if self.problem is not None:
            raise self.problem
        if self.user is None:
            raise TokenRequired("Token Required.")
        return self.user


def visit(request: Request, params: Form) -> Visit:
    """The app's own authentication dependency (the API's ``token_of`` rules stay as they are)."""
    nb = get_services(request)
    explicit = explicit_token(request, params)
    token = explicit or request.cookies.get(APP_COOKIE, "")
    via_cookie = not explicit and bool(token)
    wants_json = params.format != "html"
    problem: NbJobsError | None = None
    if via_cookie and request.method not in SAFE_METHODS and not csrf_ok(request, params, token):
        problem = CrossSiteRefused()
    user = None
    if token and problem is None:
        try:
            user = nb.tokens.authenticate(token)
        except NbJobsError as exc:
            problem = exc
    csrf = csrf_of(token) if user is not None else ""
    return Visit(user, token, csrf, problem, via_cookie, wants_json)


def csrf_ok(request: Request, params: Params, token: str) -> bool:
    sent = params.text(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    return same_origin(request) and bool(sent) and hmac.compare_digest(sent, csrf_of(token))


def login_csrf_ok(request: Request, params: Params) -> bool:
    """The sign-in form's double-submit value matches its cookie, and the POST is same-origin."""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    sent = params.text(CSRF_FIELD)
    return same_origin(request) and bool(cookie) and hmac.compare_digest(sent, cookie)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_login_cookie(response: Response, request: Request, context: str, value: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE, value, max_age=3600, path=f"/{context}/app", httponly=True,
        secure=_secure(request), samesite="strict",
    )  # fmt: skip


def set_session(response: Response, request: Request, context: str, issued: IssuedToken) -> None:
    """The two session cookies (see the module docstring), expiring with the token."""
    expires = issued.expires // 1000
    secure = _secure(request)
    response.set_cookie(
        APP_COOKIE, issued.token, expires=expires, path=f"/{context}/app", httponly=True,
        secure=secure, samesite="lax",
    )  # fmt: skip
    response.set_cookie(
        TOKEN_COOKIE, issued.token, expires=expires, path=f"/{context}/admin", httponly=True,
        secure=secure, samesite="strict",
    )  # fmt: skip
    response.delete_cookie(LOGIN_COOKIE, path=f"/{context}/app", secure=secure, httponly=True)


def clear_session(response: Response, request: Request, context: str) -> None:
    secure = _secure(request)
    response.delete_cookie(APP_COOKIE, path=f"/{context}/app", secure=secure, httponly=True, samesite="lax")
    response.delete_cookie(
        TOKEN_COOKIE, path=f"/{context}/admin", secure=secure, httponly=True, samesite="strict"
    )


Visitor = Annotated[Visit, Depends(visit)]
