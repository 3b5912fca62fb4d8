"""Jobs in both ArcGIS families over one store: ``/admin/notebooks/jobs``, ``/admin/system/jobs``,
and the generic ``/admin/jobs/<id>``. Another user's job answers exactly like an unknown one."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import JobNotFound
from nbjobs.models.accounts import User
from nbjobs.models.jobs import Job, is_job_id
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.notebook_html import notebook_html_response
from nbjobs.web.render import Link, Operation, respond
from nbjobs.web.routing import operation
from nbjobs.web.views import job_brief_a, job_brief_b, job_full, job_generic

router = APIRouter(prefix="/admin")
MAX_JOBS_PER_LIST = 10_000  # one answer builds every row it lists: bounded, see docs/limits.md
TAGS = ("jobs",)
_SUCCESS = {"status": "success"}


def _job(nb: Nb, user: User, job_id: str) -> Job:
    if not is_job_id(job_id):
        raise JobNotFound(job_id)
    return nb.jobs.get(user.principal(), job_id)


def _job_page(request: Request, nb: Nb, job: Job) -> Response:
    base = f"/{nb.settings.server.context}/admin/notebooks/jobs/{job.job_id}"
    output = f"{base}/output"
    ended = job.ended
    links = [Link("output (executed notebook, nbjobs extension)", output)] if ended else []
    links.append(Link("notifications (delivery log, nbjobs extension)", f"{base}/notifications"))
    return respond(
        request,
        job_full(job),
        title=f"Job {job.job_id}",
        links=links,
        operations=[Operation("cancel", "cancel")],
        frame=Link("Executed notebook", f"{output}/html") if ended else None,
    )


def _output(nb: Nb, user: User, job_id: str) -> bytes:
    _job(nb, user, job_id)
    data = nb.jobs.output_notebook(user.principal(), job_id)
    if data is None:
        raise JobNotFound(job_id)
    return data


# -- family B: /admin/notebooks/jobs ---------------------------------------------------------------------


@operation(
    router,
    "/notebooks/jobs",
    summary="Notebook jobs (asyncNotebookJobs; notebookJobs with detail=true)",
    fields=("detail", "num", "sortByDate"),
    tags=TAGS,
)
def notebook_jobs(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    detail = params.flag("detail", False)
    num = params.integer("num", 100, minimum=1, maximum=MAX_JOBS_PER_LIST) or 100
    jobs, _total = nb.jobs.list(user.principal(), limit=num, newest_first=params.flag("sortByDate", False))
    body = (
        {"notebookJobs": [job_full(j) for j in jobs]}
        if detail
        else {"asyncNotebookJobs": [job_brief_b(j) for j in jobs]}
    )
    return respond(request, body, title="Notebook jobs", links=[Link(j.job_id, j.job_id) for j in jobs])


@operation(router, "/notebooks/jobs/{job_id}", summary="One notebook job", tags=TAGS)
def notebook_job(request: Request, job_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    return _job_page(request, nb, _job(nb, user, job_id))


@operation(router, "/notebooks/jobs/{job_id}/cancel", summary="Cancel a notebook job", tags=TAGS)
def notebook_job_cancel(request: Request, job_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    _job(nb, user, job_id)
    nb.jobs.cancel(user.principal(), job_id)
    return respond(request, _SUCCESS, title="Cancelled")


@operation(
    router,
    "/notebooks/jobs/{job_id}/output",
    methods=("GET",),
    summary="nbjobs extension: the executed notebook of a job (outputs so far on failure/cancel)",
    tags=TAGS,
)
def notebook_job_output(request: Request, job_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    return Response(
        _output(nb, user, job_id),
        media_type="application/x-ipynb+json",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.ipynb"'},
    )


@operation(
    router,
    "/notebooks/jobs/{job_id}/output/html",
    methods=("GET",),
    summary="nbjobs extension: the executed notebook as a sandboxed HTML page (no scripts, opaque origin)",
    tags=TAGS,
)
async def notebook_job_output_html(
    request: Request, job_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    return await notebook_html_response(await asyncio.to_thread(_output, nb, user, job_id))


# -- family A: /admin/system/jobs ------------------------------------------------------------------------


@operation(
    router,
    "/system/jobs",
    summary="Jobs (asyncJobs, total)",
    fields=("detail", "num", "sortByDate"),
    tags=TAGS,
)
def system_jobs(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    detail = params.flag("detail", False)
    num = params.integer("num", 100, minimum=1, maximum=MAX_JOBS_PER_LIST) or 100
    jobs, total = nb.jobs.list(user.principal(), limit=num, newest_first=params.flag("sortByDate", False))
    body = {"asyncJobs": [job_full(j) if detail else job_brief_a(j) for j in jobs], "total": total}
    return respond(
        request,
        body,
        title="Jobs",
        links=[Link(j.job_id, j.job_id) for j in jobs],
        operations=[Operation("deleteAll", "deleteAll")],
    )


@operation(
    router,
    "/system/jobs/deleteAll",
    summary="Delete the ended jobs you can see",
    methods=("POST",),
    tags=TAGS,
)
def system_jobs_delete_all(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.jobs.delete_all(user.principal())
    return respond(request, _SUCCESS, title="Deleted")


@operation(router, "/system/jobs/{job_id}", summary="One job", tags=TAGS)
def system_job(request: Request, job_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    return _job_page(request, nb, _job(nb, user, job_id))


@operation(router, "/system/jobs/{job_id}/cancel", summary="Cancel a job", tags=TAGS)
def system_job_cancel(request: Request, job_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    _job(nb, user, job_id)
    nb.jobs.cancel(user.principal(), job_id)
    return respond(request, _SUCCESS, title="Cancelled")


# -- generic admin jobs: /admin/jobs ---------------------------------------------------------------------


@operation(
    router, "/jobs/{job_id}", summary="A job in the generic admin-job shape (lower-case keys)", tags=TAGS
)
def generic_job(request: Request, job_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    job = _job(nb, user, job_id)
    return respond(
        request,
        job_generic(job, nb.settings.server.context, f"jobs/{job_id}"),
        title=f"Job {job_id}",
        operations=[Operation("cancel", "cancel")],
    )


@operation(router, "/jobs/{job_id}/cancel", summary="Cancel a job (generic path)", tags=TAGS)
def generic_job_cancel(request: Request, job_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    _job(nb, user, job_id)
    nb.jobs.cancel(user.principal(), job_id)
    return respond(request, _SUCCESS, title="Cancelled")
