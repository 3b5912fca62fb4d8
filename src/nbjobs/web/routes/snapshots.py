"""Notebook snapshots at ``/admin/notebooks/snapshots`` (ArcGIS 10.9; family B's paths are the same):
create, list, restore, delete, download, convertToItem, with the parameter names and answer keys the
``arcgis`` client (``arcgis/gis/nb/_snapshot.py``) sends and reads. The rules are in docs/snapshots.md."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.models.items import Snapshot
from nbjobs.service.content.snapshots import parse_resource_keys
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.render import Operation, respond
from nbjobs.web.routing import operation

router = APIRouter(prefix="/admin/notebooks/snapshots")
TAGS = ("snapshots",)
_CREATE = ("itemId", "name", "description", "notebookJSON", "privateAccess")
_RESTORE = ("itemId", "resourceKey", "preserveCurrentAsSnapshot", "title", "description")
_DELETE = ("itemId", "resourceKeys")
_KEY = ("itemId", "resourceKey")
_CONVERT = ("itemId", "resourceKey", "notebookTitle")


def snapshot_view(snapshot: Snapshot) -> dict[str, Any]:
    """One snapshot as ArcGIS lists it (resourceKey, created, properties.name/description/runtime); nbjobs'
    own keys (size, automatic, source) sit beside them in ``properties``."""
    return {
        "resourceKey": snapshot.resource_key,
        "created": snapshot.created,
        "properties": {
            "name": snapshot.name,
            "description": snapshot.description,
            "runtime": {
                "notebookRuntimeName": snapshot.runtime_name,
                "notebookRuntimeVersion": snapshot.runtime_version,
            },
            "privateAccess": snapshot.private_access,
            "size": snapshot.size,
            "automatic": snapshot.automatic,
            "source": snapshot.source,
        },
    }


@operation(router, "", summary="Snapshots (kept versions of notebook items)", tags=TAGS)
def snapshots_root(request: Request, user: SignedIn, params: Form) -> Response:
    return respond(
        request,
        {"operations": ["create", "list", "restore", "delete", "download", "convertToItem"]},
        title="Snapshots",
        operations=[
            Operation("create", "snapshots/create", _CREATE),
            Operation("list", "snapshots/list", ("itemId",)),
            Operation("restore", "snapshots/restore", _RESTORE),
            Operation("delete", "snapshots/delete", _DELETE),
            Operation("download", "snapshots/download", _KEY),
            Operation("convertToItem", "snapshots/convertToItem", _CONVERT),
        ],
    )


@operation(
    router, "/create", summary="Snapshot a notebook item", methods=("POST",), fields=_CREATE, tags=TAGS
)
async def create_snapshot(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    raw = params.values.get("notebookJSON", "")
    snapshot = await asyncio.to_thread(
        nb.snapshots.create,
        user.principal(),
        params.text("itemId"),
        name=params.text("name"),
        description=params.text("description"),
        notebook=raw.encode("utf-8") if raw.strip() else None,
        private_access=params.flag("privateAccess", False),
    )
    body = {"snapshotResourceKey": snapshot.resource_key, "status": "success"}
    return respond(request, body, title="Snapshot created")


@operation(
    router, "/list", summary="A notebook item's snapshots, newest first", fields=("itemId",), tags=TAGS
)
def list_snapshots(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    found = nb.snapshots.list(user.principal(), params.text("itemId"))
    body = {"snapshots": [snapshot_view(s) for s in found], "status": "success"}
    return respond(request, body, title="Snapshots")


@operation(
    router,
    "/restore",
    summary="Make a snapshot the item's notebook (preserveCurrentAsSnapshot: keep the current one first)",
    methods=("POST",),
    fields=_RESTORE,
    tags=TAGS,
)
def restore_snapshot(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.snapshots.restore(
        user.principal(),
        params.text("itemId"),
        params.text("resourceKey") or params.text("resourceKeys"),  # family B's page names it resourceKeys
        preserve=params.flag("preserveCurrentAsSnapshot", True),
        title=params.text("title"),
        description=params.text("description"),
    )
    return respond(request, {"status": "success"}, title="Snapshot restored")


@operation(
    router,
    "/delete",
    summary="Delete snapshots (resourceKeys: a JSON list, or one key)",
    methods=("POST",),
    fields=_DELETE,
    tags=TAGS,
)
def delete_snapshots(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    who, item_id = user.principal(), params.text("itemId")
    nb.snapshots.list(who, item_id)  # an unknown (or another user's) item first, whatever the keys
    keys = parse_resource_keys(params.text("resourceKeys") or params.text("resourceKey"))
    nb.snapshots.delete(who, item_id, keys)
    return respond(request, {"status": "success", "deleted": keys}, title="Snapshots deleted")


@operation(
    router,
    "/download",
    summary="Download a snapshot's notebook (an attachment; inline JSON with f=json)",
    fields=_KEY,
    tags=TAGS,
)
def download_snapshot(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    snapshot, data = nb.snapshots.get(user.principal(), params.text("itemId"), params.text("resourceKey"))
    return notebook_file(data, snapshot, inline=params.format != "html")


def notebook_file(data: bytes, snapshot: Snapshot, *, inline: bool) -> Response:
    """The snapshot's notebook: inline JSON, or an ``.ipynb`` attachment (the ``arcgis`` client saves it to
    a file and returns its path, as ``SnapShot.download`` documents)."""
    if inline:
        return Response(data, media_type="application/json")
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", snapshot.name)[:80] or "snapshot"
    return Response(
        data,
        media_type="application/x-ipynb+json",
        headers={"Content-Disposition": f'attachment; filename="{stem}.ipynb"'},
    )


@operation(
    router,
    "/convertToItem",
    summary="A new notebook item of the caller holding the snapshot",
    methods=("POST",),
    fields=_CONVERT,
    tags=TAGS,
)
def convert_to_item(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    item = nb.snapshots.convert(
        user.principal(), params.text("itemId"), params.text("resourceKey"), params.text("notebookTitle")
    )
    return respond(request, {"itemId": item.item_id, "status": "success"}, title="Item created")
