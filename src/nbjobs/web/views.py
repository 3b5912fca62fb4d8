"""Wire views: jobs, items and users rendered in the shapes ArcGIS clients read."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from nbjobs.models.accounts import User
from nbjobs.models.items import Item
from nbjobs.models.jobs import NO_RETRIES, Job, JobStatus, JobType
from nbjobs.models.live import LiveProgress
from nbjobs.settings import Settings

ORG_ID = "0123456789ABCDEF"  # the one organization this server hosts
SERVER_ID = "nbjobsNotebookServer0"


def base_url(request: Request, settings: Settings) -> str:
    """The absolute URL of ``/<context>``: the configured public URL, else the one the client used."""
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/")
    return f"{str(request.base_url).rstrip('/')}/{settings.server.context}"


def job_results(job: Job) -> dict[str, Any]:
    """``results``: what the run recorded, plus the failure message ArcGIS clients read on FAILED."""
    results = dict(job.results)
    if job.inputs.item_id:
        results.setdefault("itemId", job.inputs.item_id)
    if job.failure is not None:
        results.setdefault("message", job.failure.message)
        results.setdefault("reason", str(job.failure.reason))
    return results


def retry_view(job: Job) -> dict[str, Any]:
    """For a job with a retry policy or more than one attempt: the attempt number, the history of
    ended attempts and the policy (nbjobs' own keys, in ``customAttributes`` so that ArcGIS clients see
    the job shape they know, and absent for the plain one-attempt job)."""
    if job.retry == NO_RETRIES and not job.retry_on_worker_lost and job.attempt <= 1:
        return {}
    view: dict[str, Any] = {
        "attempt": job.attempt,
        "attempts": [a.to_wire() for a in job.attempts],
        "retryPolicy": job.retry.to_wire(),
    }
    if job.not_before and job.status == JobStatus.SUBMITTED:
        view["notBefore"] = job.not_before  # a retry waits for its backoff until then
    return view


def live_view(job: Job, live: LiveProgress | None) -> dict[str, Any]:
    """``…/jobs/<id>/live`` and the per-job stream's events: the job's progress, cells and output tail
    (nbjobs' own resource; the contract is in docs/api.md)."""
    running = next((c.index for c in reversed(live.cells) if c.state == "executing"), None) if live else None
    return {
        "jobId": job.job_id,
        "status": str(job.status),
        "attempt": job.attempt,
        "revision": job.revision,
        "startTime": job.start_time,
        "endTime": job.end_time if job.ended else 0,
        "progress": {"percent": job.progress_percent, "message": job.progress_message, "cellIndex": running},
        **(live or LiveProgress()).to_wire(),
        "failure": job.failure.to_wire() if job.failure else None,
    }


def _progress_key(job: Job) -> str:
    return "openNotebookProgress" if job.type == JobType.OPEN_NOTEBOOK else "executeNotebookProgress"


def job_full(job: Job) -> dict[str, Any]:
    """The detailed job (``notebookJobs`` items, ``…/jobs/<id>``): families A and B in one object."""
    return {
        "jobId": job.job_id,
        "type": str(job.type),
        "name": str(job.type),
        "username": job.username,
        "status": str(job.status),
        "inputs": job.inputs.to_wire(),
        "results": job_results(job),
        "customAttributes": {
            "isCancelled": job.cancel_requested or job.status == JobStatus.CANCELLED,
            # openNotebook jobs report openNotebookProgress (ArcGIS' name), the others executeNotebookProgress
            _progress_key(job): {"message": job.progress_message, "percent": job.progress_percent},
            **retry_view(job),
        },
        "notebookRuntimeId": job.runtime.runtime_id,
        "notebookRuntimeName": job.runtime.name,
        "notebookRuntimeVersion": job.runtime.version,
        "dateCreated": job.date_created,
        "startTime": job.start_time,
        "endTime": job.end_time if job.ended else 0,
        "revision": job.revision,
        "id": job.job_id,
        "url": "",
        "privateUrl": "",
        "failure": job.failure.to_wire() if job.failure else None,
    }


def job_brief_b(job: Job) -> dict[str, Any]:
    """An ``asyncNotebookJobs`` entry (family B abbreviated)."""
    return {
        "jobId": job.job_id,
        "name": str(job.type),
        "startTime": job.start_time,
        "endTime": job.end_time if job.ended else 0,
        "status": str(job.status),
    }


def job_brief_a(job: Job) -> dict[str, Any]:
    """An ``asyncJobs`` entry (family A abbreviated); status added, as clients filter on it."""
    return {
        "jobId": job.job_id,
        "startTime": job.start_time,
        "type": str(job.type),
        "username": job.username,
        "status": str(job.status),
    }


def job_generic(job: Job, context: str, admin_path: str) -> dict[str, Any]:
    """The generic admin job (``/admin/jobs/<id>``), whose keys ArcGIS spells in lower case."""
    view: dict[str, Any] = {
        "jobid": job.job_id,
        "status": str(job.status),
        "username": job.username,
        "starttime": job.start_time,
        "endtime": job.end_time if job.ended else 0,
        "updatedtime": job.revision,
        "operationURI": f"/{context}/admin/notebooks/{admin_path}",
    }
    if job.ended:
        view["result"] = job_results(job)
    return view


def item_view(item: Item, base: str) -> dict[str, Any]:
    """A portal item's info (``content/items/<id>``)."""
    return {
        "id": item.item_id,
        "owner": item.owner,
        "orgId": ORG_ID,
        "created": item.created,
        "modified": item.modified,
        "guid": None,
        "name": item.filename,
        "title": item.title,
        "type": item.type,
        "typeKeywords": list(item.type_keywords),
        "description": item.description,
        "snippet": item.snippet,
        "tags": list(item.tags),
        "thumbnail": None,
        "url": None,
        "access": "private",
        "size": item.size,
        "ownerFolder": None,
        "protected": False,
        "commentsEnabled": False,
        "numViews": 0,
        "itemUrl": f"{base}/sharing/rest/content/items/{item.item_id}",
    }


def user_view(user: User) -> dict[str, Any]:
    """A portal user (``community/self``, ``community/users/<u>``)."""
    return {
        "username": user.username,
        "id": user.username,
        "fullName": user.full_name or user.username,
        "firstName": user.full_name or user.username,
        "lastName": "",
        "email": user.email,
        "orgId": ORG_ID,
        "role": user.role,
        "userLicenseTypeId": "creatorUT",
        "privileges": list(user.privileges),
        "disabled": user.disabled,
        "access": "org",
        "level": "2",
        "userType": "arcgisonly",
        "provider": "arcgis",
        "created": user.created,
        "modified": user.modified,
        "groups": [],
        "tags": [],
        "culture": "en",
        "units": "metric",
    }
