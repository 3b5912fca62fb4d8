"""The app's web tools pages: the tools the caller may run, publishing one of the caller's notebooks (pick
it, see what ``analyze`` finds, publish), and a tool's page with a "try it" form per task, typed by the
tool's declared inputs (``forms.tool_fields``). ``WebToolService`` decides and converts everything."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import InvalidRequest, ItemNotFound
from nbjobs.models.accounts import User
from nbjobs.models.webtools import ACCESS, PRIVATE, WebTool
from nbjobs.service.authz import may_see
from nbjobs.service.webtools.params import Analysis
from nbjobs.web.deps import Form, Nb
from nbjobs.web.params import Params
from nbjobs.web.routes.webtools import rest_url
from nbjobs.web.ui.forms import NUMBER_PATTERN, PREFIX, Field, tool_fields, tool_values
from nbjobs.web.ui.notebooks import notebook_items
from nbjobs.web.ui.pages import base, page, redirect, render
from nbjobs.web.ui.session import Visit, Visitor

router = APIRouter(include_in_schema=False)  # included by routes.py under /app


def _list_page(
    request: Request, nb: Nb, visit: Visit, user: User, *, item_id: str = "", status: int = 200,
    message: str = "", chosen: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    """The tools ``user`` may run, and the publish form (with ``item_id``'s analysis when one is picked)."""
    tools = sorted(nb.webtools.visible(user), key=lambda t: t.title.lower())
    items = notebook_items(nb, user, user.username)
    analysis: Analysis | None = None
    picked = None
    if item_id:
        try:
            picked = nb.items.get(user.principal(), item_id)
            analysis = nb.webtools.analyze(user, item_id)
        except (InvalidRequest, ItemNotFound) as exc:
            if visit.wants_json:
                raise
            message, status, picked = message or exc.message, 400, None
    return render(
        request, "webtools.html", status_code=status, user=user, csrf=visit.csrf, nav="webtools",
        tools=tools, items=items, picked=picked, analysis=analysis, message=message, access=ACCESS,
        chosen=chosen or {},
    )  # fmt: skip


@router.get("/webtools")
@page
def webtools_page(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    """The list; ``?item=<id>`` also analyzes that notebook for publishing (a read: nothing changes)."""
    user = visit.signed_in()
    return _list_page(request, nb, visit, user, item_id=params.text("item"))


def _properties(params: Params) -> dict[str, Any]:
    """The form as the ``serviceProperties`` of createService."""
    json_properties: dict[str, Any] = {
        "notebookId": params.text("itemId"),
        "access": params.text("access") or PRIVATE,
    }
    if params.text("title"):
        json_properties["title"] = params.text("title")
    if params.text("taskName"):
        json_properties["tasks"] = [{"type": "notebook", "name": params.text("taskName")}]
    return {"provider": "notebooks", "type": "GPServer", "description": params.text("description"),
            "jsonProperties": json_properties}  # fmt: skip


@router.post("/webtools/publish")
@page
def publish(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = visit.signed_in()
    item_id = params.text("itemId")
    try:
        tool = nb.webtools.publish(user, _properties(params))
    except (InvalidRequest, ItemNotFound) as exc:  # bad fields, declaration errors, already published
        if visit.wants_json:
            raise
        message = " ".join(["Nothing was published:", exc.message, *exc.details])
        chosen = {k: params.text(k) for k in ("title", "taskName", "description", "access")}
        return _list_page(request, nb, visit, user, item_id=item_id, status=400, message=message,
                          chosen=chosen)  # fmt: skip
    return redirect(f"{base(request)}/webtools/{tool.service_name}")


def _tool_page(
    request: Request, nb: Nb, visit: Visit, user: User, tool: WebTool, *, fields: list[Field] | None = None,
    status: int = 200, message: str = "", problems: list[str] | None = None,
) -> Response:  # fmt: skip
    params = nb.webtools.params(tool, tool.task_name)
    return render(
        request, "webtool.html", status_code=status, user=user, csrf=visit.csrf, nav="webtools", tool=tool,
        params=params, fields=fields if fields is not None else tool_fields(params),
        manage=may_see(user.principal(), tool.owner), url=rest_url(request, nb, tool), prefix=PREFIX,
        number_pattern=NUMBER_PATTERN, message=message, problems=problems or [],
    )  # fmt: skip


@router.get("/webtools/{service_name}")
@page
def webtool_page(request: Request, service_name: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """A tool the caller may run: what it is, its task's inputs and outputs, and the try-it form."""
    user = visit.signed_in()
    return _tool_page(request, nb, visit, user, nb.webtools.callable(user, service_name))


@router.post("/webtools/{service_name}/run")
@page
def run_tool(request: Request, service_name: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """Submit the try-it form as a GP ``submitJob`` of the task; then the job's page."""
    user = visit.signed_in()
    tool = nb.webtools.callable(user, service_name)
    task = params.text("task") or tool.task_name
    tool_params = nb.webtools.params(tool, task)
    values = tool_values(tool_params, params.values)
    try:
        job = nb.webtools.submit(user, tool.service_name, task, values)
    except InvalidRequest as exc:  # a value that is not of its type, a required one missing
        if visit.wants_json:
            raise
        fields = tool_fields(tool_params, values, nb.webtools.input_problems(tool, task, values))
        return _tool_page(request, nb, visit, user, tool, fields=fields, status=400,
                          message=f"Nothing was run: {exc.message}", problems=exc.details)  # fmt: skip
    return redirect(f"{base(request)}/jobs/{job.job_id}")


@router.post("/webtools/{service_name}/delete")
@page
def delete_tool(request: Request, service_name: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """Delete a tool (its owner or an administrator; anyone else: as an unknown tool)."""
    user = visit.signed_in()
    nb.webtools.delete(user, service_name)
    return redirect(f"{base(request)}/webtools")
