"""The app's jobs pages: the list (filter, sort, paginate; rows follow the job-list stream) and one job
(progress, output tail, failure, the sandboxed executed notebook, cancel, run again, downloads)."""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import re
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import InvalidRequest, JobNotFound, NbJobsError
from nbjobs.models.accounts import User
from nbjobs.models.jobs import ENDED, Job, JobFilter, JobStatus, JobType, is_job_id
from nbjobs.web.deps import Form, Nb
from nbjobs.web.notebook_html import NOTEBOOK_HEADERS, notebook_html
from nbjobs.web.params import Params
from nbjobs.web.ui.pages import APP_HEADERS, base, page, redirect, render
from nbjobs.web.ui.session import Visitor
from nbjobs.web.views import live_view

router = APIRouter(include_in_schema=False)  # included by routes.py under /app
PAGE_SIZE = 25
DAY_MS = 86_400_000
SORTS = {"newest": True, "oldest": False}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: str) -> str:
    """Terminal colour codes (IPython tracebacks) removed."""
    return _ANSI.sub("", text)


def _day(text: str, name: str) -> int | None:
    """A YYYY-MM-DD date as the epoch ms of its UTC midnight."""
    if not text:
        return None
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a date as YYYY-MM-DD, not {text!r}.") from None
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp() * 1000)


def _choice(params: Params, name: str, allowed: tuple[str, ...]) -> str:
    value = params.text(name)
    if value and value not in allowed:
        raise InvalidRequest(f"'{name}' must be one of {', '.join(allowed)}, not {value!r}.")
    return value


def elapsed(job: Job, now: int) -> int | None:
    """How long the job has run (ms), or None before it started."""
    if not job.start_time:
        return None
    end = job.end_time if job.status in ENDED and job.end_time else now
    return max(0, end - job.start_time)


def _job(nb: Nb, user: User, job_id: str) -> Job:
    if not is_job_id(job_id):
        raise JobNotFound(job_id)
    return nb.jobs.get(user.principal(), job_id)


@router.get("/jobs")
@page
def jobs_page(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = visit.signed_in()
    admin = user.is_admin
    status = _choice(params, "status", tuple(s.value for s in JobStatus))
    kind = _choice(params, "type", tuple(t.value for t in JobType))
    sort = _choice(params, "sort", tuple(SORTS)) or "newest"
    runtime = params.text("runtime")
    owner = params.text("user") if admin else ""
    created_from, created_to = _day(params.text("from"), "from"), _day(params.text("to"), "to")
    where = JobFilter(
        types=frozenset({JobType(kind)}) if kind else None,
        runtime_name=runtime or None,
        created_from=created_from,
        created_to=created_to + DAY_MS if created_to is not None else None,
    )
    number = params.integer("page", 1, minimum=1, maximum=1_000_000) or 1
    jobs, total = nb.jobs.list(
        user.principal(),
        statuses=frozenset({JobStatus(status)}) if status else None,
        limit=PAGE_SIZE,
        offset=(number - 1) * PAGE_SIZE,
        newest_first=SORTS[sort],
        where=where,
        username=owner or None,
    )
    try:
        runtimes = sorted({r.name for r in nb.runtimes.readable(user)})
    except NbJobsError:
        runtimes = []
    chosen = {
        k: v
        for k, v in {"status": status, "type": kind, "runtime": runtime, "user": owner,
                     "from": params.text("from"), "to": params.text("to"), "sort": sort}.items()
        if v
    }  # fmt: skip
    pages = max(1, math.ceil(total / PAGE_SIZE))

    def page_url(n: int) -> str:
        return f"{base(request)}/jobs?{urlencode({**chosen, 'page': n})}"

    now = nb.clock()
    rows = [{"job": j, "elapsed": elapsed(j, now)} for j in jobs]
    return render(
        request, "jobs.html", user=user, csrf=visit.csrf, nav="jobs", rows=rows, total=total, admin=admin,
        statuses=[s.value for s in JobStatus], types=[t.value for t in JobType], runtimes=runtimes,
        chosen=chosen, sort=sort, number=number, pages=pages,
        previous=page_url(number - 1) if number > 1 else "",
        next=page_url(number + 1) if number < pages else "",
    )  # fmt: skip


@router.get("/jobs/{job_id}")
@page
def job_page(request: Request, job_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = visit.signed_in()
    _job(nb, user, job_id)
    job, live = nb.jobs.live(user.principal(), job_id)
    snapshot = live_view(job, live)
    failure = job.failure
    traceback = plain("\n".join(failure.traceback)) if failure and failure.traceback else ""
    failure_view = {
        "reason": str(failure.reason) if failure else "",
        "message": failure.message if failure else "",
        "cell": "" if failure is None or failure.cell_index is None else str(failure.cell_index),
        "ename": (failure.ename or "") if failure else "",
        "evalue": plain(failure.evalue or "") if failure else "",
    }
    output = [{"cell": t["cellIndex"], "name": t["name"], "text": t["text"]} for t in snapshot["output"]]
    done = sum(1 for c in snapshot["cells"] if c["state"] != "executing")
    cells = snapshot["codeCells"]
    percent = 100 if job.status == JobStatus.COMPLETED else job.progress_percent
    ctx = nb.settings.server.context
    return render(
        request, "job.html", user=user, csrf=visit.csrf, nav="jobs", job=job, failure=failure,
        failure_view=failure_view,
        traceback=traceback, output=output, done=done, cells=cells, percent=percent,
        elapsed=elapsed(job, nb.clock()), ended=job.status in ENDED,
        has_output=bool(job.results.get("hasOutputNotebook")),
        parameters=json.dumps(job.inputs.notebook_parameters.to_wire(), indent=1, default=str),
        snapshot=json.dumps(snapshot, default=str),
        api=f"/{ctx}/admin/notebooks/jobs/{job.job_id}",
    )  # fmt: skip


@router.post("/jobs/{job_id}/cancel")
@page
def cancel_job(request: Request, job_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    user = visit.signed_in()
    _job(nb, user, job_id)
    job = nb.jobs.cancel(user.principal(), job_id)
    if visit.wants_json:
        return Response(json.dumps({"status": "success", "jobStatus": str(job.status)}),
                        media_type="application/json", headers=APP_HEADERS)  # fmt: skip
    return redirect(f"{base(request)}/jobs/{job_id}")


@router.post("/jobs/{job_id}/rerun")
@page
def rerun_job(request: Request, job_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """Run the job's notebook item again with the same parameters and options."""
    user = visit.signed_in()
    job = _job(nb, user, job_id)
    inputs = job.inputs
    if job.type != JobType.EXECUTE_NOTEBOOK or not inputs.item_id:
        raise InvalidRequest("Only a notebook item's job can be run again from here.")
    again = nb.notebooks.execute(
        user,
        inputs.item_id,
        update_portal_item=inputs.update_portal_item,
        parameters=inputs.notebook_parameters,
        save_injected_parameters=inputs.save_injected_parameters,
        timeout_minutes=inputs.execution_timeout_minutes,
        runtime_id=job.runtime.runtime_id,
        retry=job.retry,
    )
    return redirect(f"{base(request)}/jobs/{again.job_id}")


@router.get("/jobs/{job_id}/notebook.html")
@page
async def job_html_download(request: Request, job_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """The executed notebook as an HTML file to save (the sandbox headers kept, should it be opened)."""
    user = visit.signed_in()
    data = await asyncio.to_thread(_output, nb, user, job_id)
    body = await asyncio.to_thread(notebook_html, data)
    headers = {**NOTEBOOK_HEADERS, "Content-Disposition": f'attachment; filename="{job_id}.html"'}
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


def _output(nb: Nb, user: User, job_id: str) -> bytes:
    _job(nb, user, job_id)
    data = nb.jobs.output_notebook(user.principal(), job_id)
    if data is None:
        raise JobNotFound(job_id)
    return data
