"""The app's side of interactive notebooks (docs/app.md, "Interactive notebooks"): **Open in JupyterLab**
on an item's page (an ``openNotebook`` job), the "Opening…" page that follows the job, the step that
hands the browser to JupyterLab (the lab cookie from the app's session, then a 303 to JupyterLab's page
through nbjobs' proxy), and **Running notebooks** (close a notebook; terminate a notebook server).

Pages over ``InteractiveService``, as the API routes are; it decides who may. One rule is the app's: only
a notebook's owner is ever sent into its JupyterLab (the proxy lets no one else in either), so an
administrator's list has no "Open" link for other users' notebooks, and the hand-over answers them like
an unknown job or notebook."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import AuthError, ItemNotFound, JobNotFound, NbJobsError, NotebookNotFound
from nbjobs.models.accounts import User
from nbjobs.models.interactive import Container, OpenNotebook
from nbjobs.models.jobs import ENDED, Job, JobStatus, JobType, is_job_id
from nbjobs.web.deps import Form, Nb
from nbjobs.web.routes.lab_proxy import set_lab_cookie
from nbjobs.web.ui.notebooks import _item_page
from nbjobs.web.ui.pages import base, page, redirect, render
from nbjobs.web.ui.session import Visit, Visitor

router = APIRouter(include_in_schema=False)  # included by routes.py under /app
LISTED = 100  # open notebooks shown on the running page (the count says when there are more)


def lab_page(context: str, container_id: str, item_id: str) -> str:
    """JupyterLab's own page for an item's notebook, through nbjobs' proxy."""
    return f"/{context}/notebooks/{container_id}/lab/tree/{item_id}.ipynb"


# -- open -------------------------------------------------------------------------------------------------


@router.post("/notebooks/{item_id}/open")
@page
def open_notebook(request: Request, item_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """Submit an openNotebook job for the item; then the "Opening…" page. A refusal (the container limit,
    a disabled runtime, the job limit, no createNotebooks privilege) is said on the item's page."""
    user = visit.signed_in()
    try:
        job = nb.interactive.open(user, item_id)
    except (AuthError, ItemNotFound):
        raise
    except NbJobsError as exc:
        if visit.wants_json:
            raise
        status = exc.code if exc.code in (403, 409, 429) else 400
        message = f"The notebook was not opened: {' '.join([exc.message, *exc.details])}"
        return _item_page(request, nb, visit, user, item_id, message=message, status=status)
    return redirect(f"{base(request)}/open/{job.job_id}")


def _open_job(nb: Nb, user: User, job_id: str) -> Job:
    if not is_job_id(job_id):
        raise JobNotFound(job_id)
    return nb.jobs.get(user.principal(), job_id)


@router.get("/open/{job_id}")
@page
def opening_page(request: Request, job_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """The openNotebook job's progress; once COMPLETED the page goes on to JupyterLab (script, else a
    refresh), FAILED says why. Any other job (or another user's, as an administrator sees it) is the job
    page's business."""
    user = visit.signed_in()
    job = _open_job(nb, user, job_id)
    if job.type != JobType.OPEN_NOTEBOOK or job.username != user.username:
        return redirect(f"{base(request)}/jobs/{job_id}")
    title = _item_title(nb, user, job.inputs.item_id)
    percent = 100 if job.status == JobStatus.COMPLETED else job.progress_percent
    ctx = nb.settings.server.context
    return render(
        request, "opening.html", user=user, csrf=visit.csrf, nav="running", job=job, title=title,
        percent=percent, ended=job.status in ENDED, failure=job.failure,
        enter=f"{base(request)}/open/{job_id}/lab", api=f"/{ctx}/admin/notebooks/jobs/{job_id}",
    )  # fmt: skip


@router.get("/open/{job_id}/lab")
@page
def enter_from_job(request: Request, job_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """The caller's COMPLETED openNotebook job: the lab cookie from this session, then JupyterLab's page.
    Not yet COMPLETED: back to the "Opening…" page. Another user's job answers like an unknown one."""
    user = visit.signed_in()
    job = _open_job(nb, user, job_id)
    if job.username != user.username:  # an administrator sees it, but only its owner enters
        raise JobNotFound(job_id)
    if job.type != JobType.OPEN_NOTEBOOK:
        return redirect(f"{base(request)}/jobs/{job_id}")
    if job.status != JobStatus.COMPLETED:
        return redirect(f"{base(request)}/open/{job_id}")
    notebook_id = str(job.results.get("notebookId", ""))
    if not notebook_id:
        raise NotebookNotFound(notebook_id)
    return _enter(request, nb, visit, user, nb.interactive.notebook(user, notebook_id))


@router.get("/running/{notebook_id}/lab")
@page
def enter_notebook(request: Request, notebook_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """An open notebook of the caller's, in JupyterLab (the running page's "Open")."""
    user = visit.signed_in()
    return _enter(request, nb, visit, user, nb.interactive.notebook(user, notebook_id))


def _enter(request: Request, nb: Nb, visit: Visit, user: User, notebook: OpenNotebook) -> Response:
    if notebook.username != user.username:  # an administrator lists it, but does not enter it
        raise NotebookNotFound(notebook.notebook_id)
    response = redirect(lab_page(nb.settings.server.context, notebook.container_id, notebook.item_id))
    set_lab_cookie(response, request, nb, visit.token)
    return response


# -- running notebooks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotebookRow:
    notebook: OpenNotebook
    title: str  # the item's title ("" when the item is gone)
    mine: bool  # the caller's own: "Open" is offered


@dataclass(frozen=True)
class ServerRow:
    container: Container
    notebooks: int


def _item_title(nb: Nb, user: User, item_id: str) -> str:
    if not item_id:
        return ""
    try:
        return nb.items.get(user.principal(), item_id).title
    except NbJobsError:
        return ""


def _running_page(request: Request, nb: Nb, visit: Visit) -> Response:
    user = visit.signed_in()
    total, notebooks = nb.interactive.notebooks(user, start=1, num=LISTED)
    titles: dict[str, str] = {}
    rows = []
    for n in notebooks:
        if n.item_id not in titles:
            titles[n.item_id] = _item_title(nb, user, n.item_id)
        rows.append(NotebookRow(n, titles[n.item_id], n.username == user.username))
    servers = [
        ServerRow(c, int(nb.interactive.container_view(c)["numberOfNotebooks"]))
        for c in nb.interactive.container_list(user)
    ]
    return render(
        request, "running.html", user=user, csrf=visit.csrf, nav="running", section="running", rows=rows,
        total=total, servers=servers, admin=user.is_admin, now=nb.clock(),
    )  # fmt: skip


@router.get("/running")
@page
def running_page(request: Request, nb: Nb, params: Form, visit: Visitor) -> Response:
    return _running_page(request, nb, visit)


@router.post("/running/{notebook_id}/close")
@page
def close_notebook(request: Request, notebook_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """Save the notebook to its item and close it (the last one closed stops its server)."""
    user = visit.signed_in()
    nb.interactive.close(user, notebook_id)
    return redirect(f"{base(request)}/running")


@router.post("/running/servers/{container_id}/terminate")
@page
def terminate_server(request: Request, container_id: str, nb: Nb, params: Form, visit: Visitor) -> Response:
    """Save a notebook server's open notebooks and stop it."""
    user = visit.signed_in()
    nb.interactive.terminate(user, container_id)
    return redirect(f"{base(request)}/running")
