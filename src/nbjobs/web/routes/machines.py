"""``/admin/system/machines``: the live workers of this deployment, in the ArcGIS machines shape."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.service.system.machines import Machine
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.render import respond
from nbjobs.web.routing import operation

router = APIRouter(prefix="/admin/system")
TAGS = ("admin",)


def machine_view(machine: Machine) -> dict[str, Any]:
    w = machine.worker
    return {
        "machineName": w.hostname,
        "workerId": w.worker_id,
        "pid": w.pid,
        "state": w.state,
        "runtimes": [dict(r) for r in w.runtimes],
        "queues": list(w.queues),
        "concurrency": w.concurrency,
        "runningJobs": len(machine.running_jobs),
        "jobIds": list(machine.running_jobs),
        "started": w.started,
        "lastHeartbeat": w.last_heartbeat,
        "version": w.version,
    }


@operation(router, "/machines", summary="Live worker machines (administrators)", tags=TAGS)
async def machines(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    found = await asyncio.to_thread(nb.machines.list, user)
    return respond(request, {"machines": [machine_view(m) for m in found]}, title="Machines")
