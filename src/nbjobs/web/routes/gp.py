"""Web tools over the ArcGIS geoprocessing REST API: ``/rest/services/<name>/GPServer/<task>/…``.

``submitJob`` and the ``jobs`` resources are what ArcGIS serves; ``execute`` also answers synchronously:
it waits on the job's end (up to ``NBJOBS_WEBTOOL_EXECUTE_WAIT_SECONDS``), then answers with the
results, or with the job to poll when the run takes longer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import InvalidRequest, JobNotFound, NotFound, WebToolFailed
from nbjobs.models.jobs import Job
from nbjobs.service.webtools.outcome import SUCCEEDED, Outcome
from nbjobs.service.webtools.params import INPUT, OUTPUT, ParamType, ToolParam, ToolParams
from nbjobs.service.webtools.values import typed_output
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.render import Link, Operation, respond
from nbjobs.web.routing import operation
from nbjobs.web.services import WebServices

router = APIRouter(prefix="/rest/services")
TAGS = ("GP services",)
CURRENT_VERSION = 11.3
ASYNCHRONOUS = "esriExecutionTypeAsynchronous"
_TASK = "/{service_name}/GPServer/{task_name}"
_JOB = _TASK + "/jobs/{job_id}"
_FAST_POLL_SECONDS = 0.02  # a warm-pool run ends in ~50–100 ms; polling faster starves it of the GIL
_SLOW_POLL_SECONDS = 0.05
_FAST_POLL_FOR = 2.0


@operation(router, "", summary="The services directory: web tools you may run", tags=TAGS)
def services_root(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    tools = nb.webtools.visible(user)
    body = {
        "currentVersion": CURRENT_VERSION,
        "folders": [],
        "services": [{"name": t.service_name, "type": "GPServer", "title": t.title} for t in tools],
    }
    return respond(
        request, body, title="Services", links=[Link(t.title, f"{t.service_name}/GPServer") for t in tools]
    )


@operation(router, "/{service_name}/GPServer", summary="A web tool as a GP service", tags=TAGS)
def gp_service(request: Request, service_name: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    tool = nb.webtools.callable(user, service_name)
    body = {
        "currentVersion": CURRENT_VERSION,
        "serviceDescription": tool.description,
        "description": tool.description,
        "title": tool.title,
        "tasks": [tool.task_name],
        "executionType": ASYNCHRONOUS,
        "resultMapServerName": "",
        "maximumRecords": 1000,
        "capabilities": "",
    }
    return respond(
        request, body, title=f"{tool.title} (GPServer)", links=[Link(tool.task_name, tool.task_name)]
    )


@operation(router, _TASK, summary="A web tool task: its parameters", tags=TAGS)
def gp_task(
    request: Request, service_name: str, task_name: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    tool = nb.webtools.callable(user, service_name)
    tool_params = nb.webtools.params(tool, task_name)
    body = {
        "name": tool.task_name,
        "displayName": tool.title,
        "description": tool.description,
        "category": "",
        "helpUrl": "",
        "itemId": tool.service_name,
        "executionType": ASYNCHRONOUS,
        "parameters": [_param_view(p) for p in (*tool_params.inputs, *tool_params.outputs)],
    }
    names = tuple(p.name for p in tool_params.inputs)
    return respond(
        request,
        body,
        title=f"Task {tool.task_name}",
        operations=[Operation("submitJob", "submitJob", names), Operation("execute", "execute", names)],
    )


@operation(router, _TASK + "/submitJob", summary="Run the task asynchronously", tags=TAGS)
def submit_job(
    request: Request, service_name: str, task_name: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    job = nb.webtools.submit(user, service_name, task_name, params.values)
    tool = nb.webtools.callable(user, service_name)
    out = nb.webtools.outcome(job, nb.webtools.params(tool, task_name), task_name)
    return respond(request, {"jobId": job.job_id, "jobStatus": out.status}, title=f"Job {job.job_id}")


@operation(router, _TASK + "/execute", summary="Run the task and wait for its results (bounded)", tags=TAGS)
async def execute(
    request: Request, service_name: str, task_name: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    submitted = await asyncio.to_thread(nb.webtools.submit, user, service_name, task_name, params.values)
    tool = nb.webtools.callable(user, service_name)
    tool_params = nb.webtools.params(tool, task_name)
    job = await _wait(nb, submitted.job_id, nb.settings.webtools.webtool_execute_wait_seconds)
    out = nb.webtools.outcome(job, tool_params, task_name)
    if not out.ended:  # too slow to wait for: the caller polls …/jobs/<jobId> like after submitJob
        return respond(request, _job_view(job, tool_params, out), title=f"Job {job.job_id}")
    if out.status != SUCCEEDED:
        raise WebToolFailed(details=[*out.errors, f"jobId: {job.job_id}", f"jobStatus: {out.status}"])
    body = {
        "results": [_result(p, out) for p in tool_params.outputs],
        "messages": out.messages,
        "jobId": job.job_id,
    }
    return respond(request, body, title=f"Results of {job.job_id}")


@operation(router, _JOB, summary="A web tool job: status, messages, results and inputs", tags=TAGS)
def gp_job(
    request: Request, service_name: str, task_name: str, job_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    _tool, tool_params, job, _call = nb.webtools.call(user, service_name, task_name, job_id)
    out = nb.webtools.outcome(job, tool_params, task_name)
    return respond(
        request,
        _job_view(job, tool_params, out),
        title=f"Job {job_id}",
        operations=[Operation("cancel", "cancel")],
    )


@operation(router, _JOB + "/results/{param_name}", summary="One output of a succeeded job", tags=TAGS)
def gp_result(
    request: Request,
    service_name: str,
    task_name: str,
    job_id: str,
    param_name: str,
    nb: Nb,
    user: SignedIn,
    params: Form,
) -> Response:
    _tool, tool_params, job, _call = nb.webtools.call(user, service_name, task_name, job_id)
    param = tool_params.output(param_name)
    if param is None:
        raise NotFound(f"Parameter '{param_name}' is not an output of task '{task_name}'.")
    out = nb.webtools.outcome(job, tool_params, task_name)
    if out.status != SUCCEEDED:
        raise InvalidRequest(f"Job results are not available: the job is {out.status}.")
    return respond(request, _result(param, out), title=param_name)


@operation(router, _JOB + "/inputs/{param_name}", summary="One input of a job", tags=TAGS)
def gp_input(
    request: Request,
    service_name: str,
    task_name: str,
    job_id: str,
    param_name: str,
    nb: Nb,
    user: SignedIn,
    params: Form,
) -> Response:
    _tool, tool_params, _job, call = nb.webtools.call(user, service_name, task_name, job_id)
    param = tool_params.input(param_name)
    if param is None:
        raise NotFound(f"Parameter '{param_name}' is not an input of task '{task_name}'.")
    value = call.inputs[param.name] if param.name in call.inputs else _default(param)
    body = {"paramName": param.name, "dataType": param.type.gp, "value": value}
    return respond(request, body, title=param_name)


@operation(router, _JOB + "/cancel", summary="Cancel a web tool job", tags=TAGS)
def gp_cancel(
    request: Request, service_name: str, task_name: str, job_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    job = nb.webtools.cancel(user, service_name, task_name, job_id)
    tool = nb.webtools.callable(user, service_name)
    out = nb.webtools.outcome(job, nb.webtools.params(tool, task_name), task_name)
    return respond(request, {"jobId": job.job_id, "jobStatus": out.status}, title=f"Job {job_id}")


# -- views -------------------------------------------------------------------------------------------


def _param_view(p: ToolParam) -> dict[str, Any]:
    if p.direction == INPUT:
        kind = "esriGPParameterTypeRequired" if p.required else "esriGPParameterTypeOptional"
    else:
        kind = "esriGPParameterTypeDerived"
    return {
        "name": p.name,
        "dataType": p.type.gp,
        "displayName": p.label,
        "description": p.description,
        "direction": p.direction if p.direction in (INPUT, OUTPUT) else INPUT,
        "defaultValue": _default(p) if p.direction == INPUT else None,
        "parameterType": kind,
        "category": "",
    }


def _default(p: ToolParam) -> Any:
    """The notebook's own value as GP clients expect it (dates as epoch ms; none for unreadable ones)."""
    if p.default is None:
        return None
    try:
        return typed_output(p, p.default) if p.type is ParamType.DATE else p.default
    except ValueError:
        return None


def _job_view(job: Job, params: ToolParams, out: Outcome) -> dict[str, Any]:
    view: dict[str, Any] = {"jobId": job.job_id, "jobStatus": out.status, "messages": out.messages}
    if out.status == SUCCEEDED:
        view["results"] = {p.name: {"paramUrl": f"results/{p.name}"} for p in params.outputs}
    view["inputs"] = {p.name: {"paramUrl": f"inputs/{p.name}"} for p in params.inputs}
    return view


def _result(param: ToolParam, out: Outcome) -> dict[str, Any]:
    return {"paramName": param.name, "dataType": param.type.gp, "value": out.results.get(param.name)}


async def _wait(nb: WebServices, job_id: str, seconds: float) -> Job:
    """The job once it has ended, or as it is when ``seconds`` have passed."""
    start = time.monotonic()
    while True:
        job = await asyncio.to_thread(nb.webtools.peek, job_id)
        if job is None:
            raise JobNotFound(job_id)
        elapsed = time.monotonic() - start
        if job.ended or elapsed >= seconds:
            return job
        await asyncio.sleep(_FAST_POLL_SECONDS if elapsed < _FAST_POLL_FOR else _SLOW_POLL_SECONDS)
