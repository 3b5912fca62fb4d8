"""``/admin/metrics``: this server's metrics in the Prometheus text format, for an administrator's token.

The answer is ``text/plain; version=0.0.4`` whatever ``f`` says: Prometheus (and every scraper) reads
only that. A scraper sends the token as ``Authorization: Bearer <token>`` (Prometheus ``authorization``)
or as ``?token=``; a scraper without tokens uses the separate listener of ``NBJOBS_METRICS_PORT``.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.telemetry.metrics import CONTENT_TYPE
from nbjobs.web.deps import Form, Nb, SignedIn
from nbjobs.web.routing import operation

router = APIRouter(prefix="/admin")


@operation(
    router, "/metrics", summary="Metrics in the Prometheus text format (administrators)", tags=("admin",)
)
def metrics(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    return Response(nb.metrics.scrape(user), media_type=CONTENT_TYPE)
