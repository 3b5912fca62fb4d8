"""The runtimes resource of the notebook administrator API: read by notebook users, changed by admins."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import InvalidRequest, RuntimesInvalid
from nbjobs.models.runtimes import RuntimeSpec
from nbjobs.service.runtimes.fields import RuntimeFields
from nbjobs.service.runtimes.registry import RuntimeService
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.params import Params
from nbjobs.web.render import Link, Operation, respond
from nbjobs.web.routing import operation

router = APIRouter(prefix="/admin/notebooks/runtimes")
TAGS = ("runtimes",)
_CHANGE = (
    "python",
    "imageId",
    "version",
    "maxCpu",
    "maxMemory",
    "maxMemoryUnit",
    "maxSwapMemory",
    "maxSwapMemoryUnit",
    "maxWallMinutes",
    "maxOutputBytes",
    "requiresAdvancedPrivileges",
    "disabled",
    "preload",
    "startMethod",
)
_REGISTER_FIELDS = ("name", *_CHANGE)
_UPDATE_FIELDS = ("name", *_CHANGE)


def runtime_view(runtimes: RuntimeService, spec: RuntimeSpec) -> dict[str, Any]:
    """A runtime in the ArcGIS shape (a kernelspec stands where ArcGIS has a container image)."""
    return {
        "id": spec.runtime_id,
        "name": spec.name,
        "version": spec.version,
        "containerType": "kernelspec",
        "imageId": spec.kernel_name,
        "imagePullString": "",
        "dockerRuntime": "",
        "esriProvidedRuntime": spec.is_default,
        "requiresAdvancedPrivileges": spec.requires_advanced_privileges,
        "disabled": spec.disabled,
        "maxCpu": spec.max_cpu,
        "maxMemory": spec.max_memory,
        "maxMemoryUnit": spec.max_memory_unit,
        "maxSwapMemory": spec.max_swap_memory,
        "maxSwapMemoryUnit": spec.max_swap_memory_unit,
        "sharedMemorySize": 0,
        "sharedMemorySizeUnit": "m",
        "python": runtimes.python_of(spec),
        "maxWallMinutes": spec.max_wall_minutes,
        "maxOutputBytes": spec.max_output_bytes,
        "preload": list(spec.preload),
        "startMethod": spec.start_method,
        "startStatus": None if spec.start_status is None else dataclasses.asdict(spec.start_status),
        "created": spec.created,
        "updated": spec.updated,
    }


def fields_of(params: Params) -> RuntimeFields:
    """The runtime fields a register/update request carries; absent or empty fields are None."""

    def text(name: str) -> str | None:
        return params.text(name) or None

    def flag(name: str) -> bool | None:
        return params.flag(name, False) if params.text(name) else None

    output = _number(params, "maxOutputBytes")
    if output is not None and not output.is_integer():
        raise InvalidRequest(f"Invalid value for 'maxOutputBytes': {params.text('maxOutputBytes')!r}.")
    return RuntimeFields(
        name=text("name"),
        python=text("python"),
        image_id=text("imageId"),
        version=text("version"),
        max_cpu=_number(params, "maxCpu"),
        max_memory=_number(params, "maxMemory"),
        max_memory_unit=text("maxMemoryUnit"),
        max_swap_memory=_number(params, "maxSwapMemory"),
        max_swap_memory_unit=text("maxSwapMemoryUnit"),
        max_wall_minutes=_number(params, "maxWallMinutes"),
        max_output_bytes=None if output is None else int(output),
        requires_advanced_privileges=flag("requiresAdvancedPrivileges"),
        disabled=flag("disabled"),
        preload=_modules(params, "preload"),
        start_method=text("startMethod"),
    )


def _modules(params: Params, name: str) -> tuple[str, ...] | None:
    """A JSON array of module names (``[]`` clears) or comma-separated names; None when absent or empty."""
    raw = params.text(name)
    if raw == "":
        return None
    if raw[0] not in '[{"':  # not JSON: names separated by commas
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidRequest(
            f"Invalid value for '{name}': not valid JSON (give a JSON array of module names, "
            "or names separated by commas)."
        ) from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"Invalid value for '{name}': expected a JSON array of module names (strings).")
    return tuple(value)


def _number(params: Params, name: str) -> float | None:
    raw = params.text(name)
    if raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"Invalid value for '{name}': {raw!r} (expected a number).") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidRequest(f"Invalid value for '{name}': {raw!r} (must be 0 or more; 0 = no limit).")
    return value


# Operations on the collection come before /{runtime_id}, which would otherwise match their names.
@operation(router, "", summary="Runtimes", tags=TAGS)
def list_runtimes(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    runtimes = nb.runtimes.readable(user)
    return respond(
        request,
        {
            "currentRuntimeVersion": nb.runtimes.default().version,
            "runtimes": [runtime_view(nb.runtimes, r) for r in runtimes],
        },
        title="Runtimes",
        links=[Link(r.name, r.runtime_id) for r in runtimes],
        operations=[
            Operation("register", "register", _REGISTER_FIELDS),
            Operation("restore", "restore"),
            Operation("validateRuntimes", "validateRuntimes"),
        ],
    )


@operation(
    router, "/register", summary="Register a runtime", methods=("POST",), fields=_REGISTER_FIELDS, tags=TAGS
)
def register_runtime(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    spec = nb.runtimes.register(user, fields_of(params))
    return respond(request, {"notebookRuntime": {"id": spec.runtime_id}}, title="Runtime registered")


@operation(router, "/restore", summary="Back to the default runtime only", methods=("POST",), tags=TAGS)
def restore_runtimes(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.runtimes.restore(user)
    return respond(request, {"status": "success"}, title="Runtimes restored")


@operation(router, "/validateRuntimes", summary="Check every runtime can start a kernel", tags=TAGS)
async def validate_runtimes(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    checks = await asyncio.to_thread(nb.runtimes.check, user)
    failed = [c for c in checks if not c.ok]
    if failed:
        details = [f"Runtime '{c.runtime.name}' ({c.runtime.runtime_id}): {c.error}" for c in failed]
        raise RuntimesInvalid(details=details)
    report = [
        {
            "id": c.runtime.runtime_id,
            "name": c.runtime.name,
            "python": c.python,
            "pythonVersion": c.python_version,
        }
        for c in checks
    ]
    return respond(request, {"status": "success", "runtimes": report}, title="Runtimes valid")


@operation(router, "/{runtime_id}", summary="One runtime", tags=TAGS)
def get_runtime(request: Request, runtime_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    spec = nb.runtimes.read(user, runtime_id)
    return respond(
        request,
        runtime_view(nb.runtimes, spec),
        title=spec.name,
        links=[Link("manifest", "manifest")],
        operations=[Operation("update", "update", _UPDATE_FIELDS), Operation("unregister", "unregister")],
    )


@operation(router, "/{runtime_id}/manifest", summary="Libraries of a runtime", tags=TAGS)
async def runtime_manifest(
    request: Request, runtime_id: str, nb: Nb, user: SignedIn, params: Form
) -> Response:
    libraries = await asyncio.to_thread(nb.runtimes.manifest, user, runtime_id)
    return respond(request, {"libraries": libraries}, title="Manifest")


@operation(
    router,
    "/{runtime_id}/update",
    summary="Change a runtime",
    methods=("POST",),
    fields=_UPDATE_FIELDS,
    tags=TAGS,
)
def update_runtime(request: Request, runtime_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.runtimes.update(user, runtime_id, fields_of(params))
    return respond(request, {"status": "success"}, title="Runtime updated")


@operation(router, "/{runtime_id}/unregister", summary="Remove a runtime", methods=("POST",), tags=TAGS)
def unregister_runtime(request: Request, runtime_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    nb.runtimes.unregister(user, runtime_id)
    return respond(request, {"status": "success"}, title="Runtime unregistered")
