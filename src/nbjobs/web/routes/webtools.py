"""Web tools in the notebook administrator API: ``/admin/services`` (list, createService,
analyzeNotebook, ``<name>.GPServer``, its ``edit`` and ``delete``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import InvalidRequest
from nbjobs.models.webtools import WebTool
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.render import Link, Operation, respond
from nbjobs.web.routing import operation
from nbjobs.web.services import WebServices
from nbjobs.web.views import base_url

router = APIRouter(prefix="/admin/services")
TAGS = ("web tools",)
_SUCCESS = {"status": "success"}


def rest_url(request: Request, nb: WebServices, tool: WebTool) -> str:
    """Where GP clients call the tool."""
    return f"{base_url(request, nb.settings)}/rest/services/{tool.service_name}/GPServer"


def service_brief(request: Request, nb: WebServices, tool: WebTool) -> dict[str, Any]:
    """An entry of the services list (``id`` and ``type`` are what the ArcGIS client builds URLs from)."""
    return {
        "id": tool.service_name,
        "serviceName": tool.service_name,
        "type": "GPServer",
        "provider": "notebooks",
        "title": tool.title,
        "description": tool.description,
        "owner": tool.owner,
        "notebookId": tool.notebook_id,
        "access": tool.access,
        "created": tool.created,
        "modified": tool.modified,
        "url": rest_url(request, nb, tool),
    }


def service_view(request: Request, nb: WebServices, tool: WebTool) -> dict[str, Any]:
    """``<name>.GPServer`` in the ArcGIS shape, plus what nbjobs knows of it."""
    return {
        "extensions": [],
        "provider": "notebooks",
        "description": tool.description,
        "datasets": [],
        "serviceName": tool.service_name,
        "type": "GPServer",
        "frameworkProperties": {},
        "portalProperties": {
            "isHosted": False,
            "portalItems": [{"itemID": tool.service_name, "type": "GPServer"}],
        },
        "properties": {"tasks": [tool.notebook_id]},
        "jsonProperties": {
            "title": tool.title,
            "notebookId": tool.notebook_id,
            "tasks": [{"type": "notebook", "name": tool.task_name}],
            "snapshotId": tool.snapshot_id,
            "access": tool.access,
            "retryPolicy": tool.retry.to_wire(),
            "notifications": [r.to_wire() for r in nb.webtools.notification_rules(tool)],
        },
        "owner": tool.owner,
        "parameters": tool.params,
        "notebookRuntimeId": tool.runtime_id,
        "created": tool.created,
        "modified": tool.modified,
        "url": rest_url(request, nb, tool),
    }


@operation(
    router,
    "",
    summary="Web tools (paged: start, num ≤ 100; users see their own)",
    fields=("start", "num"),
    tags=TAGS,
)
def list_services(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    start = params.integer("start", 1, minimum=1) or 1
    num = params.integer("num", 10, minimum=1) or 10
    tools, total = nb.webtools.list(user, start=start, num=num)
    next_start = start + len(tools) if start - 1 + len(tools) < total else -1
    body = {
        "total": total,
        "start": start,
        "num": len(tools),
        "nextStart": next_start,
        "services": [service_brief(request, nb, t) for t in tools],
    }
    return respond(
        request,
        body,
        title="Services",
        links=[Link(t.title, f"{t.service_name}.GPServer") for t in tools],
        operations=[
            Operation("createService", "createService", ("serviceProperties",)),
            Operation("analyzeNotebook", "analyzeNotebook", ("itemId",)),
        ],
    )


@operation(router, "/types", summary="Service types this server can publish", methods=("GET",), tags=TAGS)
def service_types(request: Request, user: SignedIn, params: Form) -> Response:
    body = {"types": [{"name": "GPServer", "provider": "notebooks", "capabilities": ""}]}
    return respond(request, body, title="Service types")


@operation(
    router,
    "/createService",
    summary="Publish a notebook you own as a web tool",
    methods=("POST",),
    fields=("serviceProperties",),
    tags=TAGS,
)
def create_service(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    properties = params.json_object("serviceProperties")
    if properties is None:
        raise InvalidRequest("serviceProperties is required.")
    tool = nb.webtools.publish(user, properties)
    body = {
        "status": "success",
        "itemId": tool.service_name,
        "serviceName": tool.service_name,
        "type": "GPServer",
        "url": rest_url(request, nb, tool),
    }
    return respond(request, body, title="Service created")


@operation(
    router,
    "/analyzeNotebook",
    summary="Check a notebook's web tool parameters",
    methods=("POST",),
    fields=("itemId",),
    tags=TAGS,
)
def analyze_notebook(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    analysis = nb.webtools.analyze(user, params.text("itemId"))
    return respond(request, analysis.to_wire(), title="Analysis")


@operation(router, "/{service_name}.GPServer", summary="One web tool", methods=("GET",), tags=TAGS)
def get_service(request: Request, service_name: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    tool = nb.webtools.get(user, service_name)
    return respond(
        request,
        service_view(request, nb, tool),
        title=tool.title,
        links=[
            Link("GP service", f"/{nb.settings.server.context}/rest/services/{tool.service_name}/GPServer")
        ],
        operations=[Operation("edit", "edit", ("serviceProperties",)), Operation("delete", "delete")],
    )


@operation(
    router,
    "/{service_name}.GPServer/edit",
    summary="Re-snapshot the notebook (and change properties)",
    methods=("POST",),
    fields=("serviceProperties",),
    tags=TAGS,
)
def edit_service(request: Request, service_name: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    tool = nb.webtools.edit(user, service_name, params.json_object("serviceProperties"))
    return respond(request, {**_SUCCESS, "snapshotId": tool.snapshot_id}, title="Service edited")


@operation(
    router, "/{service_name}.GPServer/delete", summary="Delete a web tool", methods=("POST",), tags=TAGS
)
def delete_service(request: Request, service_name: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.webtools.delete(user, service_name)
    return respond(request, _SUCCESS, title="Service deleted")
