"""Portal content at ``/sharing/rest/content``: notebook items (uploaded whole or in parts), their data,
update and delete."""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import InvalidRequest
from nbjobs.service.content.items import ItemFields
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.params import Params
from nbjobs.web.render import Link, Operation, respond
from nbjobs.web.routing import operation
from nbjobs.web.views import base_url, item_view

router = APIRouter(prefix="/sharing/rest/content")
TAGS = ("content",)
_ITEM_FIELDS = ("title", "type", "tags", "typeKeywords", "description", "snippet", "text", "filename")
_ADD_FIELDS = ("file", *_ITEM_FIELDS)
_ADD_ITEM_FIELDS = (*_ITEM_FIELDS, "fileName", "multipart")


async def _upload(params: Params) -> tuple[bytes | None, str]:
    """The item file from the ``file`` part, or the ``text`` field; and its file name."""
    upload = params.files.get("file")
    if upload is not None:
        return await upload.read(), upload.filename or ""
    if "text" in params.values:
        return params.values["text"].encode("utf-8"), ""
    return None, ""


def _fields(params: Params, filename: str) -> ItemFields:
    return ItemFields(
        title=params.values.get("title"),
        description=params.values.get("description"),
        snippet=params.values.get("snippet"),
        tags=params.words("tags"),
        type_keywords=params.words("typeKeywords"),
        filename=params.values.get("filename") or params.values.get("fileName") or filename or None,
    )


@operation(router, "/users/{username}", summary="A user's items", tags=TAGS)
def user_content(request: Request, username: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    base = base_url(request, nb.settings)
    items = [item_view(i, base) for i in nb.items.list(user.principal(), username)]
    body = {
        "username": username,
        "total": len(items),
        "start": 1,
        "num": len(items),
        "nextStart": -1,
        "currentFolder": None,
        "items": items,
        "folders": [],
    }
    return respond(
        request,
        body,
        title=f"Content of {username}",
        links=[
            Link(i["title"], f"/{nb.settings.server.context}/sharing/rest/content/items/{i['id']}")
            for i in items
        ],
        operations=[Operation("addItem", "addItem", _ADD_FIELDS)],
    )


@operation(
    router,
    "/users/{username}/addItem",
    summary="Upload a notebook item (multipart=true: start an upload in parts)",
    methods=("POST",),
    fields=_ADD_ITEM_FIELDS,
    multipart=True,
    tags=TAGS,
)
async def add_item(request: Request, username: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    return await _add(request, username, nb, user, params)


@operation(
    router,
    "/users/{username}/{folder}/addItem",
    summary="Upload a notebook item into a folder",
    methods=("POST",),
    fields=_ADD_ITEM_FIELDS,
    multipart=True,
    tags=TAGS,
)
async def add_item_in_folder(
    request: Request, username: str, folder: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    return await _add(request, username, nb, user, params)


async def _add(request: Request, username: str, nb: Nb, user: SignedIn, params: Params) -> Response:
    data, filename = await _upload(params)
    if params.flag("multipart", False):
        if data is not None:
            raise InvalidRequest("With multipart=true send the file with addPart, then commit.")
        item_id = await asyncio.to_thread(
            nb.items.begin_upload,
            user.principal(), username, type=params.text("type", "Notebook"), fields=_fields(params, ""),
        )  # fmt: skip
        return respond(request, {"success": True, "id": item_id, "folder": None}, title="Upload started")
    if data is None:
        raise InvalidRequest("A notebook file is required: send it as the multipart 'file' part.")
    item = await asyncio.to_thread(
        nb.items.add,
        user.principal(),
        username,
        data,
        type=params.text("type", "Notebook"),
        fields=_fields(params, filename),
    )
    return respond(request, {"success": True, "id": item.item_id, "folder": None}, title="Item added")


@operation(
    router,
    "/users/{username}/items/{item_id}/addPart",
    summary="Upload one part of an item started with addItem multipart=true",
    methods=("POST",),
    fields=("partNum",),
    multipart=True,
    tags=TAGS,
)
async def add_part(
    request: Request, username: str, item_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    part_num = params.integer("partNum", None)
    upload = params.files.get("file")
    if part_num is None or upload is None:
        raise InvalidRequest("addPart needs 'partNum' (1, 2, ...) and the part as the multipart 'file' part.")
    data = await upload.read()
    await asyncio.to_thread(nb.items.add_part, user.principal(), item_id, part_num, data)
    return respond(request, {"success": True}, title="Part added")


@operation(
    router,
    "/users/{username}/items/{item_id}/commit",
    summary="Join the uploaded parts into the item",
    methods=("POST",),
    fields=(*_ITEM_FIELDS, "fileName", "async"),
    tags=TAGS,
)
def commit_item(
    request: Request, username: str, item_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    # The commit is synchronous (async=true is accepted): status answers "completed" right after.
    item_type = params.text("type") or None
    item = nb.items.commit_upload(user.principal(), item_id, type=item_type, fields=_fields(params, ""))
    return respond(request, {"success": True, "id": item.item_id}, title="Item committed")


@operation(router, "/users/{username}/items/{item_id}/status", summary="An item's upload status", tags=TAGS)
def item_status(
    request: Request, username: str, item_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    status = nb.items.upload_status(user.principal(), item_id)
    body = {"itemId": item_id, "status": status, "statusMessage": status}
    return respond(request, body, title="Item status")


@operation(
    router,
    "/users/{username}/items/{item_id}/update",
    summary="Update an item",
    methods=("POST",),
    fields=_ITEM_FIELDS,
    multipart=True,
    tags=TAGS,
)
async def update_item(
    request: Request, username: str, item_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    data, filename = await _upload(params)
    await asyncio.to_thread(nb.items.update, user.principal(), item_id, _fields(params, filename), data)
    return respond(request, {"success": True, "id": item_id}, title="Item updated")


@operation(
    router, "/users/{username}/items/{item_id}/delete", summary="Delete an item", methods=("POST",), tags=TAGS
)
def delete_item(
    request: Request, username: str, item_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    nb.items.delete(user.principal(), item_id)
    return respond(request, {"success": True, "itemId": item_id}, title="Item deleted")


@operation(router, "/items/{item_id}", summary="An item's info", tags=TAGS)
def item_info(request: Request, item_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.notebooks.sync_item_updates()
    item = nb.items.get(user.principal(), item_id)
    return respond(
        request,
        item_view(item, base_url(request, nb.settings)),
        title=item.title,
        links=[Link("data", "data")],
        operations=[
            Operation(
                "update",
                f"/{nb.settings.server.context}/sharing/rest/content/users/{item.owner}/items/{item_id}/update",
                _ADD_FIELDS,
            ),
            Operation(
                "delete",
                f"/{nb.settings.server.context}/sharing/rest/content/users/{item.owner}/items/{item_id}/delete",
            ),
        ],
    )


@operation(
    router,
    "/items/{item_id}/data",
    summary="Download an item's notebook (an attachment; inline JSON with f=json)",
    tags=TAGS,
)
def item_data(request: Request, item_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.notebooks.sync_item_updates()
    item, data = nb.items.data(user.principal(), item_id)
    if params.format != "html":
        # The ArcGIS client (Item.get_data) asks with f=json and saves anything sent as an attachment to a
        # temp file, returning its path; a notebook is JSON, so answer it inline for a dict.
        return Response(data, media_type="application/json")
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", item.filename or f"{item_id}.ipynb")
    return Response(
        data,
        media_type="application/x-ipynb+json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
