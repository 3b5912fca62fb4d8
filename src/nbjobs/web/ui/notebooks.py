"""The app's notebooks pages: the caller's items, upload (a file input; the page adds drag and drop), a
new version of an item, and the run form generated from the notebook's ``parameters`` cell."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import InvalidNotebook, InvalidRequest, JobNotFound, NbJobsError, PayloadTooLarge
from nbjobs.models.accounts import User
from nbjobs.models.items import Item
from nbjobs.models.jobs import is_job_id
from nbjobs.service.content.items import NOTEBOOK_TYPE, ItemFields
from nbjobs.web.deps import Form, Nb
from nbjobs.web.params import Params
from nbjobs.web.ui.forms import (
    MORE,
    NUMBER_PATTERN,
    PREFIX,
    Field,
    extra_of,
    fields_of,
    notebook_defaults,
    read_form,
)
from nbjobs.web.ui.pages import base, page, redirect, render
from nbjobs.web.ui.session import Visit, Visitor

router = APIRouter(include_in_schema=False)  # included by routes.py under /app


def notebook_items(nb: Nb, user: User, owner: str) -> list[Item]:
    """``owner``'s notebook items that ``user`` may see, by title (the forms' notebook choices)."""
    items = [i for i in nb.items.list(user.principal(), owner) if i.type == NOTEBOOK_TYPE]
    return sorted(items, key=lambda i: i.title.lower())


def _list_page(
    request: Request, nb: Nb, visit: Visit, user: User, status: int = 200, **extra: Any
) -> Response:
    items = nb.items.list(user.principal(), user.username)
    items.sort(key=lambda i: i.modified, reverse=True)
    extra.setdefault("message", "")
    return render(request, "notebooks.html", status_code=status, user=user, csrf=visit.csrf, nav="notebooks",
                  items=items, **extra)  # fmt: skip


@router.get("/notebooks")
@page
def notebooks_page(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = visit.signed_in()
    return _list_page(request, nb, visit, user)


async def _file(params: Params) -> tuple[bytes, str]:
    upload = params.files.get("file")
    if upload is None:
        raise InvalidRequest("Choose a notebook file (.ipynb) to upload.")
    data = await upload.read()
    if not data:
        raise InvalidNotebook("The file is empty: choose a Jupyter notebook (.ipynb).")
    return data, upload.filename or ""


@router.post("/notebooks/upload")
@page
async def upload_notebook(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = visit.signed_in()
    try:
        data, filename = await _file(params)
        title = params.text("title") or filename.removesuffix(".ipynb") or "Untitled notebook"
        fields = ItemFields(title=title, filename=filename or None)
        item = await asyncio.to_thread(
            nb.items.add, user.principal(), user.username, data, type=NOTEBOOK_TYPE, fields=fields
        )
    except (InvalidRequest, PayloadTooLarge) as exc:  # InvalidNotebook is an InvalidRequest
        if visit.wants_json:
            raise
        message = f"{filename_of(params)} was not uploaded: {exc.message}"
        return await asyncio.to_thread(_list_page, request, nb, visit, user, 400, message=message)
    return redirect(f"{base(request)}/notebooks/{item.item_id}")


def filename_of(params: Params) -> str:
    upload = params.files.get("file")
    return f"“{upload.filename}”" if upload is not None and upload.filename else "The file"


def _item_page(
    request: Request, nb: Nb, visit: Visit, user: User, item_id: str, *, given: dict[str, Any] | None = None,
    fields: list[Field] | None = None, more: str | None = None, message: str = "", status: int = 200,
    from_job: str = "",
) -> Response:  # fmt: skip
    item, data = nb.items.data(user.principal(), item_id)
    problem = ""
    try:
        defaults = notebook_defaults(data)
    except NbJobsError as exc:
        defaults, problem = {}, exc.message
    return render(
        request, "notebook.html", status_code=status, user=user, csrf=visit.csrf, nav="notebooks", item=item,
        fields=fields if fields is not None else fields_of(defaults, given),
        more=more if more is not None else extra_of(defaults, given),
        prefix=PREFIX, more_name=MORE, number_pattern=NUMBER_PATTERN, message=message, problem=problem,
        from_job=from_job, versions=nb.snapshots.list(user.principal(), item_id),
        max_versions=nb.config.current()["maxSnapshotsPerNotebookItem"],
    )  # fmt: skip


@router.get("/notebooks/{item_id}")
@page
def notebook_page(request: Request, item_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """An item, its version and the run form (``?job=<id>``: filled with that job's parameters)."""
    user = visit.signed_in()
    given = None
    job_id = params.text("job")
    if job_id:
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        given = dict(nb.jobs.get(user.principal(), job_id).inputs.notebook_parameters.to_wire())
    return _item_page(request, nb, visit, user, item_id, given=given, from_job=job_id)


@router.post("/notebooks/{item_id}/run")
@page
def run_notebook(request: Request, item_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """Submit the item as an executeNotebook job with the form's parameters; then its job page."""
    user = visit.signed_in()
    _item, data = nb.items.data(user.principal(), item_id)
    parameters, fields, more = read_form(notebook_defaults(data), params.values)
    if parameters is None:
        if visit.wants_json:
            bad = [f"{f.name}: {f.error}" for f in fields if f.error]
            raise InvalidRequest("Some parameters do not parse as their type.", details=bad)
        return _item_page(request, nb, visit, user, item_id, fields=fields, more=more, status=400,
                          message="Some values do not parse as their type; nothing was run.")  # fmt: skip
    job = nb.notebooks.execute(
        user,
        item_id,
        update_portal_item=params.flag("updatePortalItem", False),
        parameters=parameters,
        timeout_minutes=params.integer("executionTimeoutInMinutes", None, minimum=0),
    )
    return redirect(f"{base(request)}/jobs/{job.job_id}")


@router.post("/notebooks/{item_id}/update")
@page
async def new_version(request: Request, item_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """Replace the item's notebook with an uploaded one (its new version)."""
    user = visit.signed_in()
    await asyncio.to_thread(nb.items.get, user.principal(), item_id)
    try:
        data, filename = await _file(params)
        fields = ItemFields(filename=filename or None)
        await asyncio.to_thread(nb.items.update, user.principal(), item_id, fields, data)
    except (InvalidRequest, PayloadTooLarge) as exc:
        if visit.wants_json:
            raise
        message = f"{filename_of(params)} was not uploaded: {exc.message}"
        return await asyncio.to_thread(
            _item_page, request, nb, visit, user, item_id, message=message, status=400
        )
    return redirect(f"{base(request)}/notebooks/{item_id}")
