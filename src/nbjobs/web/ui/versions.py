"""The app's "Versions" of a notebook item (issue #14): its snapshots, newest first, each downloadable and
restorable, and a form to save one now. Pages over SnapshotService, as the API routes are."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import InvalidRequest
from nbjobs.web.deps import Form, Nb
from nbjobs.web.routes.snapshots import notebook_file
from nbjobs.web.ui.notebooks import _item_page
from nbjobs.web.ui.pages import base, page, redirect
from nbjobs.web.ui.session import Visitor

router = APIRouter(include_in_schema=False)  # included by routes.py under /app


@router.post("/notebooks/{item_id}/versions")
@page
async def save_version_now(request: Request, item_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """A manual snapshot of the item's current notebook; at the limit, the page says why none was made."""
    user = visit.signed_in()
    try:
        await asyncio.to_thread(
            nb.snapshots.create, user.principal(), item_id, name=params.text("name"),
            description=params.text("description"), source="app",
        )  # fmt: skip
    except InvalidRequest as exc:  # SnapshotLimitReached, a missing or long name
        if visit.wants_json:
            raise
        message = f"No snapshot was saved: {exc.message}"
        return await asyncio.to_thread(
            _item_page, request, nb, visit, user, item_id, message=message, status=400
        )
    return redirect(f"{base(request)}/notebooks/{item_id}#h-versions")


@router.get("/notebooks/{item_id}/versions/{resource_key}")
@page
def download_version(request: Request, item_id: str, resource_key: str, nb: Nb, params: Form,
                     visit: Visitor) -> Response:  # fmt: skip
    user = visit.signed_in()
    snapshot, data = nb.snapshots.get(user.principal(), item_id, resource_key)
    return notebook_file(data, snapshot, inline=False)


@router.post("/notebooks/{item_id}/versions/{resource_key}/restore")
@page
def restore_version(request: Request, item_id: str, resource_key: str, nb: Nb, params: Form,
                    visit: Visitor) -> Response:  # fmt: skip
    """Make the snapshot the item's notebook; the current one is kept first as an automatic snapshot."""
    user = visit.signed_in()
    nb.snapshots.restore(user.principal(), item_id, resource_key, preserve=True)
    return redirect(f"{base(request)}/notebooks/{item_id}#h-versions")
