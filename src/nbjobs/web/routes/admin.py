"""The notebook administrator root, executeNotebook and (read-only) configuration; runtimes are in
``runtimes.py``."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import InvalidRequest
from nbjobs.models.parameters import parse_parameters
from nbjobs.models.retries import FIELDS as RETRY_FIELDS
from nbjobs.models.retries import parse_retry_policy
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.params import Params
from nbjobs.web.render import Link, Operation, respond
from nbjobs.web.routing import operation
from nbjobs.web.services import WebServices
from nbjobs.web.views import base_url

ADMIN_VERSION = "11.3"
KUBERNETES_VERSION = "12.0.0"
router = APIRouter(prefix="/admin")
TAGS = ("admin",)
EXECUTE_FIELDS = (
    "itemId",
    "updatePortalItem",
    "notebookParameters",
    "saveInjectedParameters",
    "executionTimeoutInMinutes",
    "notebookRuntimeId",
    *RETRY_FIELDS,
    "notifications",  # nbjobs: a JSON list of notification rules (docs/notifications.md)
)


@operation(router, "", summary="Administrator root", tags=TAGS)
def admin_root(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    # On Kubernetes the arcgis client reads this root as the organization's admin (12.0 has notebooks)
    version = KUBERNETES_VERSION if nb.settings.server.portal_deployment == "kubernetes" else ADMIN_VERSION
    return respond(
        request,
        {
            "version": version,
            "currentVersion": version,
            "fullVersion": version,
            "resources": ["notebooks", "system", "jobs", "logs"],
        },
        title="Notebook Server Administrator Directory",
        links=[Link("notebooks", "notebooks"), Link("system", "system"), Link("logs", "logs")],
        operations=[Operation("generateToken", "generateToken", ("username", "password", "expiration"))],
    )


@operation(
    router,
    "/notebooks/executeNotebook",
    summary="Run a notebook item as a job",
    methods=("POST", "GET"),
    fields=EXECUTE_FIELDS,
    tags=TAGS,
)
def execute_notebook(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    update = params.flag("updatePortalItem", True)
    save = params.flag("saveInjectedParameters", False)
    timeout = params.integer("executionTimeoutInMinutes", None, minimum=0)
    job = nb.notebooks.execute(
        user,
        params.text("itemId"),
        update_portal_item=update,
        parameters=parse_parameters(params.text("notebookParameters")),
        save_injected_parameters=save,
        timeout_minutes=timeout,
        runtime_id=params.text("notebookRuntimeId"),
        retry=parse_retry_policy(params.values),
        notifications=nb.notifications.parse(params.text("notifications")),
    )
    job_url = f"{base_url(request, nb.settings)}/admin/notebooks/jobs/{job.job_id}"
    return respond(
        request,
        {"status": "success", "jobId": job.job_id, "jobUrl": job_url},
        title="Job submitted",
        links=[Link(job.job_id, job_url)],
    )


_NOTEBOOK_CONFIG = (
    "maxExecuteNotebookTimeMinutes",
    "asyncJobsCleanAgeHours",
    "webSocketSize",
    "maxSnapshotsPerNotebookItem",
    "allowHiddenFileDownloads",
    "idleNotebookThreshold",
    "containerCreatedThreshold",
    "maxContainersPerNode",
    "maxExecuteNotebookContainersPerNode",
)
_UPDATE_FIELDS = ("configJSON", "properties", *_NOTEBOOK_CONFIG[:-1])


def _changes(params: Params, *names: str) -> dict:
    """The properties to change: a JSON object in one of ``names``, else individual form fields."""
    for name in names:
        found = params.json_object(name)
        if found is not None:
            return found
    return {k: v for k, v in params.values.items() if k in _NOTEBOOK_CONFIG}


def _notebook_config(nb: WebServices) -> dict:
    current = nb.config.current()
    return {k: current[k] for k in _NOTEBOOK_CONFIG}


def _system_properties(nb: WebServices) -> dict:
    current = nb.config.current()
    return {
        "asyncJobsCleanupAgeHours": current["asyncJobsCleanAgeHours"],
        "maxExecuteNotebookTimeMinutes": current["maxExecuteNotebookTimeMinutes"],
        "maxExecuteNotebookContainersPerNode": current["maxExecuteNotebookContainersPerNode"],
        "maxSnapshotsPerNotebookItem": current["maxSnapshotsPerNotebookItem"],
        "allowHiddenFileDownloads": current["allowHiddenFileDownloads"],
        "webSocketSize": current["webSocketSize"],
        "idleNotebookThreshold": current["idleNotebookThreshold"],
        "containerCreatedThreshold": current["containerCreatedThreshold"],
        "maxContainersPerNode": current["maxContainersPerNode"],
    }


@operation(router, "/notebooks/configuration", summary="Notebook configuration", tags=TAGS)
def configuration(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    return respond(
        request,
        _notebook_config(nb),
        title="Configuration",
        operations=[Operation("update", "update", _UPDATE_FIELDS)],
    )


@operation(
    router,
    "/notebooks/configuration/update",
    summary="Change notebook configuration (merged into the current values)",
    methods=("POST",),
    fields=_UPDATE_FIELDS,
    tags=TAGS,
)
def update_configuration(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.config.update(user, _changes(params, "configJSON", "properties"))
    return respond(request, {"status": "success"}, title="Configuration updated")


@operation(router, "/system", summary="System resources", tags=TAGS)
def system_root(request: Request, user: SignedIn, params: Form) -> Response:
    return respond(
        request,
        {"resources": ["jobs", "properties", "statistics", "machines", "containers"]},
        title="System",
        links=[Link(name, name) for name in ("jobs", "properties", "statistics", "machines", "containers")],
    )


@operation(router, "/system/properties", summary="System properties", tags=TAGS)
def system_properties(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    return respond(
        request,
        _system_properties(nb),
        title="System properties",
        operations=[Operation("update", "update", ("properties",))],
    )


@operation(
    router,
    "/system/properties/update",
    summary="Replace the system properties (absent ones revert to their defaults, as in ArcGIS)",
    methods=("POST",),
    fields=("properties",),
    tags=TAGS,
)
def update_system_properties(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    changes = params.json_object("properties")
    if changes is None:
        raise InvalidRequest("'properties' is required: a JSON object of the properties to set.")
    nb.config.update(user, changes, replace_all=True)
    return respond(request, {"status": "success"}, title="System properties updated")
