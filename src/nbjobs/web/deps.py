"""FastAPI dependencies: the web services, the parameter bag and the signed-in user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from nbjobs.errors import TokenRequired
from nbjobs.models.accounts import User
from nbjobs.web.params import Params, read_params
from nbjobs.web.render import TOKEN_COOKIE
from nbjobs.web.services import WebServices


def get_services(request: Request) -> WebServices:
    services: WebServices = request.app.state.services
    return services


def explicit_token(request: Request, params: Params) -> str:
    """A token the client sent on purpose: X-Esri-Authorization or Authorization (Bearer), else the
    token parameter; "" when none (a cookie is not explicit: a browser sends it by itself)."""
    for header in ("x-esri-authorization", "authorization"):
        value = request.headers.get(header, "")
        scheme, _, credential = value.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return credential.strip()
    return params.text("token")


def token_of(request: Request, params: Params) -> str:
    """The explicit token, or the browser cookie (GET only: a cross-site form cannot carry a token it
    cannot read)."""
    token = explicit_token(request, params)
    if token or request.method != "GET":
        return token
    return request.cookies.get(TOKEN_COOKIE, "")


def optional_user(request: Request, params: Annotated[Params, Depends(read_params)]) -> User | None:
    """The token's user; None without a token; InvalidToken (498) for a bad one. A plain function:
    FastAPI runs it in its thread pool, so the database lookup never blocks the event loop."""
    token = token_of(request, params)
    if not token:
        return None
    return get_services(request).tokens.authenticate(token)


async def current_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    """The signed-in user, else TokenRequired (499)."""
    if user is None:
        raise TokenRequired("Token Required.")
    return user


Nb = Annotated[WebServices, Depends(get_services)]
Form = Annotated[Params, Depends(read_params)]
SignedIn = Annotated[User, Depends(current_user)]
MaybeSignedIn = Annotated[User | None, Depends(optional_user)]
