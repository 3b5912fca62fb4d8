"""``/admin/system/statistics``: usage per user and runtime over a recent window (administrators)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.render import Link, respond
from nbjobs.web.routing import operation

router = APIRouter(prefix="/admin/system/statistics")
TAGS = ("admin",)


@operation(router, "", summary="Usage statistics resources", tags=TAGS)
def statistics_root(request: Request, user: SignedIn, params: Form) -> Response:
    return respond(
        request, {"resources": ["mostRecent"]}, title="Statistics", links=[Link("mostRecent", "mostRecent")]
    )


@operation(
    router,
    "/mostRecent",
    summary="Jobs, wall and CPU time per user and runtime in the last windowMinutes (default 60)",
    fields=("windowMinutes",),
    tags=TAGS,
)
async def most_recent(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    minutes = params.integer("windowMinutes", None)
    answer = await asyncio.to_thread(nb.statistics.most_recent, user, minutes)
    return respond(request, answer, title="Usage statistics")
