"""Interactive notebooks' administrator API, as ArcGIS has it (docs/interactive.md):

- ``notebooks/openNotebook`` (families A and B), ``notebooks`` (the open ones, paged),
  ``notebooks/<id>``, ``notebooks/<id>/closeNotebook`` (and ``/close``, the doc's example path);
- family A ``system/containers`` (+ ``/<id>``, ``/sessions``, ``/notebooks``, ``/logs``,
  ``/terminateContainer``); family B ``notebooks/deployments`` (+ ``/<id>``, ``/notebooks``,
  ``/terminate``).

The ``notebooks/<id>`` routes are registered after every other ``notebooks/…`` route (``app.py``),
so a fixed name like ``notebooks/jobs`` is never taken for a notebook id.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import NotebookNotFound
from nbjobs.models.interactive import OpenNotebook
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.render import Link, Operation, respond
from nbjobs.web.routes.admin import EXECUTE_FIELDS
from nbjobs.web.routing import operation
from nbjobs.web.services import WebServices
from nbjobs.web.views import base_url

router = APIRouter(prefix="/admin")
notebook_routes = APIRouter(prefix="/admin")  # notebooks/<id>…: registered last
TAGS = ("interactive",)
_OPEN_FIELDS = ("itemId", "notebookRuntimeId", "templateNotebook", "templateId", "async")
MAX_NUM = 100


@operation(router, "/notebooks/openNotebook", summary="Open a notebook item in JupyterLab (a job)",
           methods=("POST",), fields=_OPEN_FIELDS, tags=TAGS)  # fmt: skip
def open_notebook(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    job = nb.interactive.open(
        user,
        params.text("itemId"),
        runtime_id=params.text("notebookRuntimeId"),
        template=params.values.get("templateNotebook", "") or "",
    )
    job_url = f"{base_url(request, nb.settings)}/admin/notebooks/jobs/{job.job_id}"
    return respond(
        request,
        {"status": "success", "jobId": job.job_id, "jobUrl": job_url},
        title="Notebook opening",
        links=[Link(job.job_id, job_url)],
    )


@operation(router, "/notebooks", summary="The notebooks open now (paged: start, num)",
           fields=("start", "num"), tags=TAGS)  # fmt: skip
def notebooks_root(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    start = params.integer("start", 1, minimum=1) or 1
    num = params.integer("num", 10, minimum=1, maximum=MAX_NUM) or 10
    total, page = nb.interactive.notebooks(user, start=start, num=num)
    next_start = start + len(page) if start - 1 + len(page) < total else -1
    return respond(
        request,
        {
            "total": total,
            "notebooks": [nb.interactive.notebook_view(n) for n in page],
            "num": len(page),
            "start": start,
            "nextStart": next_start,
        },
        title="Notebooks",
        links=[
            Link("jobs", "jobs"),
            Link("runtimes", "runtimes"),
            Link("deployments", "deployments"),
            *(Link(n.notebook_id, f"notebooks/{n.notebook_id}") for n in page),
        ],  # fmt: skip
        operations=[
            Operation("openNotebook", "openNotebook", _OPEN_FIELDS),
            Operation("executeNotebook", "executeNotebook", EXECUTE_FIELDS),
        ],  # fmt: skip
    )


def _notebook(request: Request, nb: WebServices, notebook: OpenNotebook) -> Response:
    return respond(
        request,
        nb.interactive.notebook_view(notebook),
        title=f"Notebook {notebook.notebook_id}",
        operations=[Operation("closeNotebook", "closeNotebook", ())],
    )


def _closed(request: Request) -> Response:
    return respond(request, {"status": "success"}, title="Notebook closed")


@operation(notebook_routes, "/notebooks/{notebook_id}", summary="An open notebook", tags=TAGS)
def notebook(request: Request, notebook_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    return _notebook(request, nb, nb.interactive.notebook(user, notebook_id))


@operation(notebook_routes, "/notebooks/{notebook_id}/closeNotebook", summary="Save and close a notebook",
           methods=("POST",), tags=TAGS)  # fmt: skip
def close_notebook(request: Request, notebook_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.interactive.close(user, notebook_id)
    return _closed(request)


@operation(notebook_routes, "/notebooks/{notebook_id}/close", summary="Save and close a notebook (alias)",
           methods=("POST",), tags=TAGS)  # fmt: skip
def close_notebook_alias(
    request: Request, notebook_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    nb.interactive.close(user, notebook_id)
    return _closed(request)


# -- containers (family A) and deployments (family B) --------------------------------------------------------


def _containers(request: Request, nb: WebServices, user: SignedIn, key: str, title: str) -> Response:
    found = nb.interactive.container_list(user)
    return respond(
        request,
        {key: [nb.interactive.container_view(c) for c in found]},
        title=title,
        links=[Link(c.container_id, f"{key}/{c.container_id}") for c in found],
    )


def _container(request: Request, nb: WebServices, user: SignedIn, container_id: str, stop: str) -> Response:
    found = nb.interactive.container(user, container_id)
    return respond(
        request,
        nb.interactive.container_view(found),
        title=f"Container {container_id}",
        links=[
            Link("sessions", f"{container_id}/sessions"),
            Link("notebooks", f"{container_id}/notebooks"),
            Link("logs", f"{container_id}/logs"),
        ],  # fmt: skip
        operations=[Operation(stop, stop, ())],
    )


def _container_notebooks(request: Request, nb: WebServices, user: SignedIn, container_id: str) -> Response:
    found = nb.interactive.container_notebooks(user, container_id)
    return respond(
        request,
        {"notebooks": [nb.interactive.notebook_view(n) for n in found]},
        title=f"Notebooks of container {container_id}",
    )


def _in_container(nb: WebServices, user: SignedIn, container_id: str, notebook_id: str) -> OpenNotebook:
    found = nb.interactive.notebook(user, notebook_id)
    if found.container_id != container_id:
        nb.interactive.container(user, container_id)  # an unknown container says so first
        raise NotebookNotFound(notebook_id)
    return found


@operation(router, "/system/containers", summary="Notebook containers (users' Jupyter servers)", tags=TAGS)
def containers(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    return _containers(request, nb, user, "containers", "Containers")


@operation(
    router, "/notebooks/deployments", summary="Notebook deployments (users' Jupyter servers)", tags=TAGS
)
def deployments(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    return _containers(request, nb, user, "deployments", "Deployments")


def _named(name: str, summary: str, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
    """``operation`` for an endpoint made in a loop: named first, so its OpenAPI operation id is unique."""

    def decorate(endpoint):  # type: ignore[no-untyped-def]
        endpoint.__name__ = name
        return operation(router, path, summary=summary, tags=TAGS, **kwargs)(endpoint)  # type: ignore[arg-type]

    return decorate


def _container_routes(prefix: str, stop: str) -> None:
    key = prefix.rsplit("/", 1)[1]

    @_named(f"{key}_one", f"One of the {key}", prefix + "/{container_id}")
    def one(request: Request, container_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
        return _container(request, nb, user, container_id, stop)

    @_named(f"{key}_sessions", f"Kernel sessions of one of the {key}", prefix + "/{container_id}/sessions")
    def sessions(request: Request, container_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
        return respond(request, {"sessions": nb.interactive.sessions(user, container_id)}, title="Sessions")

    @_named(f"{key}_notebooks", f"Notebooks open in one of the {key}", prefix + "/{container_id}/notebooks")
    def notebooks(request: Request, container_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
        return _container_notebooks(request, nb, user, container_id)

    @_named(f"{key}_notebook", "A notebook open in it", prefix + "/{container_id}/notebooks/{notebook_id}")
    def notebook_in(
        request: Request, container_id: str, notebook_id: str, nb: Nb, user: SignedIn, params: Form
    ) -> Response:
        return _notebook(request, nb, _in_container(nb, user, container_id, notebook_id))

    @_named(f"{key}_close_notebook", "Save and close a notebook open in it",
            prefix + "/{container_id}/notebooks/{notebook_id}/closeNotebook", methods=("POST",))  # fmt: skip
    def close_in(
        request: Request, container_id: str, notebook_id: str, nb: Nb, user: SignedIn, params: Form
    ) -> Response:
        nb.interactive.close(user, _in_container(nb, user, container_id, notebook_id).notebook_id)
        return _closed(request)

    @_named(f"{key}_close_alias", "Save and close a notebook open in it (the arcgis client's path)",
            prefix + "/{container_id}/notebooks/{notebook_id}/close", methods=("POST",))  # fmt: skip
    def close_alias(
        request: Request, container_id: str, notebook_id: str, nb: Nb, user: SignedIn, params: Form
    ) -> Response:
        nb.interactive.close(user, _in_container(nb, user, container_id, notebook_id).notebook_id)
        return _closed(request)

    @_named(f"{key}_statistics", "What its server's processes use now", prefix + "/{container_id}/statistics")
    def statistics(request: Request, container_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
        return respond(request, nb.interactive.statistics(user, container_id), title="Statistics")

    @_named(f"{key}_logs", "The last lines of its server's log", prefix + "/{container_id}/logs",
            fields=("tail",))  # fmt: skip
    def logs(request: Request, container_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
        lines = params.integer("tail", 1000, minimum=0, maximum=10_000) or 0
        return respond(
            request, {"containerLogs": nb.interactive.logs(user, container_id, lines)}, title="Logs"
        )

    @_named(f"{key}_{stop}", "Save its notebooks and stop it", prefix + "/{container_id}/" + stop,
            methods=("POST",))  # fmt: skip
    def terminate(request: Request, container_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
        nb.interactive.terminate(user, container_id)
        return respond(request, {"status": "success"}, title="Stopped")


_container_routes("/system/containers", "terminateContainer")
_container_routes("/notebooks/deployments", "terminate")
