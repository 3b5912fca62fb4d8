"""``create_app``: the ASGI application over the web services, mounted at ``/<context>``."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from nbjobs import __version__
from nbjobs.web.access import RequestLog
from nbjobs.web.errors import install_error_handlers
from nbjobs.web.http_metrics import HttpMetrics
from nbjobs.web.middleware import Guard
from nbjobs.web.proxy import Proxy
from nbjobs.web.routes import (
    admin,
    content,
    gp,
    interactive,
    job_streams,
    jobs,
    lab_proxy,
    logs,
    machines,
    metrics,
    notifications,
    portal,
    runtimes,
    snapshots,
    statistics,
    tasks,
    tokens,
    webhooks,
    webtools,
)
from nbjobs.web.services import WebServices
from nbjobs.web.ui import routes as ui

log = logging.getLogger(__name__)


def create_app(services: WebServices) -> FastAPI:
    """The web app. It starts nothing: background duties belong to the server's housekeeper."""
    settings = services.settings

    proxy = Proxy()  # the interactive notebooks' transport (web/routes/lab_proxy.py)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await proxy.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="nbjobs",
        version=__version__,
        description="Jupyter notebooks as jobs, behind the ArcGIS Notebook Server administrator API.",
        openapi_url=f"/{settings.server.context}/openapi.json",
        docs_url=f"/{settings.server.context}/docs",
        redoc_url=None,
    )
    app.state.services = services
    app.state.lab_proxy = proxy
    app.state.oauth_key = secrets.token_bytes(32)
    root = APIRouter(prefix=f"/{settings.server.context}")
    for router in (portal.router, content.router, tokens.portal, tokens.admin, admin.router,
                   job_streams.router, jobs.router, runtimes.router, tasks.router, webhooks.admin,
                   webhooks.events, machines.router, webtools.router, gp.router, metrics.router, logs.router,
                   notifications.router, statistics.router, snapshots.router):  # fmt: skip
        root.include_router(router)
    root.include_router(interactive.router)
    root.include_router(interactive.notebook_routes)  # notebooks/<id>: after every fixed notebooks/… path
    root.include_router(lab_proxy.router)  # /<context>/notebooks/<containerId>/…: users' JupyterLab
    root.include_router(ui.router)  # the app for people: /<context>/app (docs/app.md)
    app.include_router(root)

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        return RedirectResponse(f"/{settings.server.context}/app/")

    install_error_handlers(app, settings.server.context)
    app.add_middleware(
        Guard,
        max_body=settings.limits.max_upload_bytes,
        context=settings.server.context,
        max_request=settings.limits.max_request_bytes,
        max_webhook=settings.limits.webhook_max_body_bytes,
    )
    # outermost: it times what the guard answers too
    app.add_middleware(HttpMetrics, metrics=services.metrics.metrics, routes=lambda: app.routes)
    # the very outside: every line a request causes, the guard's and the metrics' too, has its id
    app.add_middleware(RequestLog)
    return app
