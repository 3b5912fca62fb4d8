"""Signing in: generateToken (portal and admin) and the OAuth2 implicit grant the ArcGIS client uses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import time
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from nbjobs.errors import InvalidCredentials, InvalidRequest, NbJobsError
from nbjobs.service.accounts.tokens import IssuedToken
from nbjobs.web.deps import Form, Nb
from nbjobs.web.params import Params
from nbjobs.web.render import TOKEN_COOKIE, Operation, respond
from nbjobs.web.routing import operation
from nbjobs.web.views import base_url

portal = APIRouter(prefix="/sharing")
admin = APIRouter(prefix="/admin")
OOB = "urn:ietf:wg:oauth:2.0:oob"
STATE_SECONDS = 600
_LOGIN_FIELDS = ("username", "password", "expiration", "client", "referer")


def _generate(request: Request, nb: Nb, params: Params) -> Response:
    if request_wants_form(params):
        return respond(
            request, {}, title="Generate Token", operations=[Operation("generateToken", "", _LOGIN_FIELDS)]
        )
    missing = [f"'{n}' must be specified." for n in ("username", "password") if not params.values.get(n)]
    if missing:
        raise InvalidCredentials("Unable to generate token.", details=missing)
    user = nb.users.authenticate(
        params.text("username"), params.values["password"], address=client_address(request)
    )
    minutes = params.integer("expiration", None)
    issued = nb.tokens.issue(user, minutes, client=params.text("referer") or params.text("client"))
    body = {"token": issued.token, "expires": issued.expires, "ssl": request.url.scheme == "https"}
    response = respond(request, body, title="Token")
    if params.format == "html":
        _set_cookie(response, request, issued)
    return response


def client_address(request: Request) -> str:
    """The address sign-in failures are counted against: the peer, or the X-Forwarded-For client when
    the peer is a proxy uvicorn trusts (``--forwarded-allow-ips``, loopback by default)."""
    return request.client.host if request.client else ""


def request_wants_form(params: Params) -> bool:
    return params.format == "html" and not params.values.get("username")


def _set_cookie(response: Response, request: Request, issued: IssuedToken) -> None:
    response.set_cookie(
        TOKEN_COOKIE,
        issued.token,
        expires=issued.expires // 1000,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )


@operation(
    portal, "/rest/generateToken", summary="Generate a portal token", fields=_LOGIN_FIELDS, tags=("auth",)
)
def portal_generate_token(request: Request, nb: Nb, params: Form) -> Response:
    return _generate(request, nb, params)


@operation(admin, "/generateToken", summary="Generate an admin token", fields=_LOGIN_FIELDS, tags=("auth",))
def admin_generate_token(request: Request, nb: Nb, params: Form) -> Response:
    return _generate(request, nb, params)


# -- OAuth2 implicit grant ------------------------------------------------------------------------------
# oauth_state is signed, not stored: it carries the client's redirect_uri, state and expiration.


def _sign(key: bytes, payload: dict) -> str:
    raw = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
    mac = hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()
    return f"{raw}.{mac}"


def _unsign(key: bytes, text: str) -> dict:
    raw, _, mac = text.partition(".")
    good = hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()
    if not raw or not hmac.compare_digest(mac, good):
        raise InvalidRequest("Invalid oauth_state.")
    payload = json.loads(base64.urlsafe_b64decode(raw.encode()))
    if payload.get("t", 0) + STATE_SECONDS < time.time():
        raise InvalidRequest("The sign-in page expired; start again.")
    return payload


def _redirect_allowed(request: Request, redirect_uri: str) -> bool:
    """Tokens go only back to this server's own origin or out-of-band, never to a third-party site."""
    if redirect_uri == OOB:
        return True
    parts = urlsplit(redirect_uri)
    return parts.scheme in ("https", "http") and parts.netloc == request.url.netloc


def _signin_page(request: Request, info: dict, message: str = "") -> HTMLResponse:
    action = f"{base_url(request, request.app.state.services.settings)}/sharing/oauth2/signin"
    error = f"<p style='color:red'>{html.escape(message)}</p>" if message else ""
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sign in</title>"
        f"<script>var oAuthInfo = {_script_json(info)};</script></head><body><h1>Sign in to nbjobs</h1>"
        f"{error}<form method='post' action='{html.escape(action)}'>"
        f"<input type='hidden' name='oauth_state' value='{html.escape(info.get('oauth_state', ''))}'>"
        "<label>Username <input name='username'></label><br>"
        "<label>Password <input type='password' name='password'></label><br>"
        "<button>Sign in</button></form></body></html>"
    )
    return HTMLResponse(body)


def _script_json(data: dict) -> str:
    """JSON safe inside <script>: no '</script>' or '<!--' can close or confuse the element."""
    text = json.dumps(data)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@operation(
    portal,
    "/rest/oauth2/authorize",
    summary="OAuth2 authorize (implicit grant)",
    methods=("GET",),
    fields=("client_id", "response_type", "redirect_uri", "state", "expiration"),
    tags=("auth",),
)
def oauth_authorize(request: Request, params: Form) -> Response:
    if params.text("response_type", "token") != "token":
        # The ArcGIS client falls back to the implicit grant on exactly this text.
        return HTMLResponse(
            "<html><body>Error: Invalid client_id (only response_type=token is supported)</body></html>"
        )
    redirect_uri = params.text("redirect_uri") or OOB
    if not _redirect_allowed(request, redirect_uri):
        return HTMLResponse("<html><body>Error: Invalid redirect_uri</body></html>")
    payload = {
        "r": redirect_uri,
        "s": params.text("state"),
        "e": params.integer("expiration", None),
        "c": params.text("client_id"),
        "t": int(time.time()),
    }
    info = {
        "oauth_state": _sign(request.app.state.oauth_key, payload),
        "client_id": params.text("client_id"),
        "appTitle": "nbjobs",
        "locale": "en",
    }
    return _signin_page(request, info)


@operation(
    portal,
    "/oauth2/signin",
    summary="OAuth2 sign-in form target",
    methods=("POST",),
    fields=("oauth_state", "username", "password", "expiration"),
    tags=("auth",),
)
def oauth_signin(request: Request, nb: Nb, params: Form) -> Response:
    state_text = params.text("oauth_state")
    payload = _unsign(request.app.state.oauth_key, state_text)
    try:
        user = nb.users.authenticate(
            params.text("username"), params.values.get("password", ""), address=client_address(request)
        )
    except NbJobsError as exc:
        info = {"oauth_state": state_text, "messages": [*exc.details] or [exc.message]}
        return _signin_page(request, info, "; ".join(info["messages"]))
    minutes = params.integer("expiration", None) or payload.get("e")
    issued = nb.tokens.issue(user, minutes, client=payload.get("c", ""))
    fragment = urlencode(
        {
            "access_token": issued.token,
            "expires_in": max(0, (issued.expires - nb.clock()) // 1000),
            "username": user.username,
            "ssl": "true" if request.url.scheme == "https" else "false",
            "state": payload.get("s", ""),
        }
    )
    target = payload["r"]
    if target == OOB:
        target = f"{base_url(request, nb.settings)}/sharing/oauth2/approval"
    return RedirectResponse(f"{target}#{fragment}", status_code=302)


@operation(
    portal,
    "/rest/oauth2/revokeToken",
    summary="Revoke a token (signing out)",
    methods=("POST",),
    fields=("auth_token", "client_id", "token_type_hint"),
    tags=("auth",),
)
def oauth_revoke_token(request: Request, nb: Nb, params: Form) -> Response:
    """ArcGIS's ``oauth2/revokeToken``: the token in ``auth_token`` stops working at once. Holding the
    token is the credential (as RFC 7009), so no other is asked; an unknown or already revoked token
    answers the same success, so the answer tells nothing about tokens one does not hold."""
    token = params.text("auth_token")
    if not token:
        raise InvalidRequest("'auth_token' must be specified.")
    nb.tokens.revoke(token)
    return respond(request, {"success": True}, title="Token revoked")


@operation(
    portal,
    "/oauth2/approval",
    summary="Out-of-band landing page after sign-in",
    methods=("GET",),
    tags=("auth",),
)
def oauth_approval(request: Request) -> Response:
    return HTMLResponse(
        "<html><body><p>Signed in. The token is in this page's URL fragment.</p></body></html>"
    )
