"""The notebook administrator root, executeNotebook and (read-only) configuration; runtimes are in
``runtimes.py``."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.render import Link, Operation, respond
from nbjobs.web.routing import operation
from nbjobs.web.views import base_url

ADMIN_VERSION = "11.3"
router = APIRouter(prefix="/admin")
TAGS = ("admin",)
_EXECUTE_FIELDS = (
    "itemId",
    "updatePortalItem",
    "notebookParameters",
    "saveInjectedParameters",
    "executionTimeoutInMinutes",
    "notebookRuntimeId",
)


@operation(router, "", summary="Administrator root", tags=TAGS)
async def admin_root(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    return respond(
        request,
        {
            "version": ADMIN_VERSION,
            "currentVersion": ADMIN_VERSION,
            "fullVersion": ADMIN_VERSION,
            "resources": ["notebooks", "system", "jobs"],
        },
        title="Notebook Server Administrator Directory",
        links=[Link("notebooks", "notebooks"), Link("system", "system")],
        operations=[Operation("generateToken", "generateToken", ("username", "password", "expiration"))],
    )


@operation(router, "/notebooks", summary="Open notebooks (none: nbjobs runs headless jobs)", tags=TAGS)
async def notebooks_root(request: Request, user: SignedIn, params: Form) -> Response:
    return respond(
        request,
        {"total": 0, "notebooks": [], "start": 1, "num": 0, "nextStart": -1},
        title="Notebooks",
        links=[Link("jobs", "jobs"), Link("runtimes", "runtimes")],
        operations=[Operation("executeNotebook", "executeNotebook", _EXECUTE_FIELDS)],
    )


@operation(
    router,
    "/notebooks/executeNotebook",
    summary="Run a notebook item as a job",
    methods=("POST", "GET"),
    fields=_EXECUTE_FIELDS,
    tags=TAGS,
)
async def execute_notebook(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    update = params.flag("updatePortalItem", True)
    save = params.flag("saveInjectedParameters", False)
    timeout = params.integer("executionTimeoutInMinutes", None, minimum=0)
    job = nb.notebooks.execute(
        user,
        params.text("itemId"),
        update_portal_item=update,
        parameters=params.text("notebookParameters") or None,
        save_injected_parameters=save,
        timeout_minutes=timeout,
        runtime_id=params.text("notebookRuntimeId"),
    )
    job_url = f"{base_url(request, nb.settings)}/admin/notebooks/jobs/{job.job_id}"
    return respond(
        request,
        {"status": "success", "jobId": job.job_id, "jobUrl": job_url},
        title="Job submitted",
        links=[Link(job.job_id, job_url)],
    )


@operation(router, "/notebooks/configuration", summary="Notebook configuration (read-only here)", tags=TAGS)
async def configuration(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    s = nb.settings
    return respond(
        request,
        {
            "maxExecuteNotebookTimeMinutes": s.max_execute_notebook_time_minutes,
            "asyncJobsCleanAgeHours": s.async_jobs_clean_age_hours,
        },
        title="Configuration",
    )


@operation(router, "/system", summary="System resources", tags=TAGS)
async def system_root(request: Request, user: SignedIn, params: Form) -> Response:
    return respond(
        request,
        {"resources": ["jobs", "properties"]},
        title="System",
        links=[Link("jobs", "jobs"), Link("properties", "properties")],
    )


@operation(router, "/system/properties", summary="System properties (read-only here)", tags=TAGS)
async def system_properties(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    s = nb.settings
    return respond(
        request,
        {
            "asyncJobsCleanupAgeHours": s.async_jobs_clean_age_hours,
            "maxExecuteNotebookTimeMinutes": s.max_execute_notebook_time_minutes,
        },
        title="System properties",
    )
