"""``/<context>/notebooks/<containerId>/…``: a user's JupyterLab, through nbjobs (docs/interactive.md).

Who gets through: the container's owner only, signed in with an nbjobs token — sent explicitly
(``Authorization: Bearer``, ``X-Esri-Authorization``, or ``?token=`` once, which this route turns into
the lab cookie and drops from the URL) or as the lab cookie (``HttpOnly``, ``SameSite=Lax``, path
``/<context>/notebooks/``). With the cookie, a WebSocket and every state-changing request must come
from this server's own origin. Another user's container, an unknown one and a stopped one answer the
same 404, from nbjobs: nothing of the upstream is read for them.

What passes is the transport's business (``web/proxy.py``): no nbjobs cookie or token reaches Jupyter,
which gets its own token instead. One thing is ours on the way: a save (``PUT …/api/contents/<item
file>``) of a notebook opened from an item is written to the item first (a new version, snapshots
kept); when that fails, JupyterLab is told the save failed, with the reason, and the file is not
written either.
"""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import quote

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import Message
from starlette.websockets import WebSocket

from nbjobs.errors import NbJobsError, PayloadTooLarge, TokenRequired
from nbjobs.models.accounts import User
from nbjobs.models.interactive import Container
from nbjobs.service.interactive.service import SaveFailed
from nbjobs.web.deps import get_services
from nbjobs.web.proxy import Proxy, Upstream, UpstreamUnavailable, same_origin
from nbjobs.web.render import TOKEN_COOKIE
from nbjobs.web.services import WebServices
from nbjobs.web.ui.session import APP_COOKIE, LOGIN_COOKIE, CrossSiteRefused

router = APIRouter()
LAB_COOKIE = "nbjobs_lab"
NBJOBS_COOKIES = (APP_COOKIE, TOKEN_COOKIE, LOGIN_COOKIE, LAB_COOKIE)
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
_ITEM_URL = re.compile(r"^notebooks/([^/]+\.ipynb)$")  # ArcGIS' notebookUrl: /notebooks/<cid>/notebooks/<f>
_CONTENTS = "api/contents/"


class NotebookServerUnavailable(NbJobsError):
    """The notebook server is not reachable. It may have stopped: open the notebook again."""

    code = 502


def _explicit(conn: Request | WebSocket) -> str:
    for header in ("x-esri-authorization", "authorization"):
        scheme, _, credential = conn.headers.get(header, "").partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return credential.strip()
    return conn.query_params.get("token", "").strip()


def _proxy(conn: Request | WebSocket) -> Proxy:
    proxy: Proxy = conn.app.state.lab_proxy
    return proxy


def _upstream(nb: WebServices, container: Container) -> Upstream:
    prefix = f"/{nb.settings.server.context}/notebooks/{container.container_id}"
    return Upstream(base=container.address, token=container.token, path_prefix=prefix)


def _host_of(conn: Request | WebSocket) -> str:
    return conn.headers.get("host", conn.url.netloc)


async def _who(nb: WebServices, token: str) -> User:
    if not token:
        raise TokenRequired("Token Required.")
    return await asyncio.to_thread(nb.tokens.authenticate, token)


@router.api_route("/notebooks/{container_id}/{path:path}", methods=METHODS, include_in_schema=False)
async def lab_http(request: Request, container_id: str, path: str) -> Response:
    nb = get_services(request)
    explicit = _explicit(request)
    token = explicit or request.cookies.get(LAB_COOKIE, "")
    if not token and request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        # a person following a notebook link: sign in first, then come back here
        target = quote(str(request.url.path), safe="")
        return RedirectResponse(f"/{nb.settings.server.context}/app/signin?next={target}", status_code=303)
    user = await _who(nb, token)
    if not explicit and request.method not in SAFE and not same_origin(request.headers, request.url.scheme,
                                                                       _host_of(request)):  # fmt: skip
        raise CrossSiteRefused()
    container = await asyncio.to_thread(nb.interactive.reachable, user, container_id)
    base = f"/{nb.settings.server.context}/notebooks/{container_id}/"
    if request.query_params.get("token"):  # once: the token becomes the lab cookie, and leaves the URL
        response = RedirectResponse(_without_token(request), status_code=303)
        _set_cookie(response, request, nb, token)
        return response
    found = _ITEM_URL.match(path)
    if found and request.method == "GET":  # ArcGIS' notebookUrl opens the notebook in JupyterLab
        return RedirectResponse(f"{base}lab/tree/{found.group(1)}", status_code=303)
    await asyncio.to_thread(nb.interactive.touch, container_id)
    relayed = request
    if request.method == "PUT" and path.startswith(_CONTENTS):
        saved = await _save_back(request, nb, container, path[len(_CONTENTS) :])
        if isinstance(saved, Response):
            return saved  # the save failed: Jupyter is not asked to write it either
        relayed = saved
    try:
        return await _proxy(request).http(relayed, _upstream(nb, container), drop_cookies=NBJOBS_COOKIES)
    except UpstreamUnavailable:
        raise NotebookServerUnavailable() from None


async def _save_back(
    request: Request, nb: WebServices, container: Container, file: str
) -> Response | Request:
    """A save of an item's notebook: to the item first. Returns the answer when the save failed, else
    the request to relay: the same one (another file), or one that replays the body it read."""
    notebook = await asyncio.to_thread(nb.interactive.open_item_at, container, file)
    if notebook is None:
        return request  # another file of the workspace: Jupyter's alone, streamed
    limit = nb.settings.limits.max_upload_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return _jupyter_error(413, PayloadTooLarge(f"The notebook is larger than {limit} bytes.").message)
    try:
        model = json.loads(body)
        content = model["content"] if model.get("type") == "notebook" else None
    except (ValueError, KeyError, AttributeError, TypeError):
        content = None
    if content is not None:
        data = (json.dumps(content, ensure_ascii=False, indent=1) + "\n").encode()
        try:
            await asyncio.to_thread(nb.interactive.save, container.username, notebook.item_id, data)
        except SaveFailed as exc:
            return _jupyter_error(409, exc.message)
    replayed = bytes(body)

    async def receive() -> Message:
        return {"type": "http.request", "body": replayed, "more_body": False}

    return Request(request.scope, receive)  # the same bytes go on to Jupyter


def _jupyter_error(status: int, message: str) -> Response:
    """An error as Jupyter's REST API gives one: JupyterLab shows ``message`` in its "File Save Error"."""
    return JSONResponse({"message": message, "reason": None}, status_code=status)


def _without_token(request: Request) -> str:
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in kept)
    return request.url.path + (f"?{query}" if query else "")


def _set_cookie(response: Response, request: Request, nb: WebServices, token: str) -> None:
    response.set_cookie(
        LAB_COOKIE, token, path=f"/{nb.settings.server.context}/notebooks/", httponly=True,
        secure=request.url.scheme == "https", samesite="lax",
    )  # fmt: skip


def set_lab_cookie(response: Response, request: Request, nb: WebServices, token: str) -> None:
    """For the app's "Open" action: the session's token, valid for the notebooks' paths too."""
    _set_cookie(response, request, nb, token)


@router.websocket("/notebooks/{container_id}/{path:path}")
async def lab_websocket(websocket: WebSocket, container_id: str, path: str) -> None:
    nb = get_services(websocket)  # type: ignore[arg-type]
    explicit = _explicit(websocket)
    token = explicit or websocket.cookies.get(LAB_COOKIE, "")
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    try:
        if not explicit and not same_origin(websocket.headers, scheme, _host_of(websocket)):
            raise CrossSiteRefused()
        user = await _who(nb, token)
        container = await asyncio.to_thread(nb.interactive.reachable, user, container_id)
    except NbJobsError:
        await websocket.close(code=1008)  # before accept: the browser sees a refused handshake (403)
        return
    await asyncio.to_thread(nb.interactive.touch, container_id)
    max_message = int(nb.config.current()["webSocketSize"]) * 2**20
    await _proxy(websocket).websocket(
        websocket, _upstream(nb, container), drop_cookies=NBJOBS_COOKIES, max_message=max_message
    )
