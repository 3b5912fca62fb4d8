"""``create_app``: the ASGI application over one running nbjobs, mounted at ``/<context>``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from nbjobs import __version__
from nbjobs.roots.server import NbJobs
from nbjobs.web.errors import install_error_handlers
from nbjobs.web.middleware import Guard
from nbjobs.web.routes import (
    admin,
    content,
    gp,
    jobs,
    machines,
    portal,
    runtimes,
    tasks,
    tokens,
    webhooks,
    webtools,
)

log = logging.getLogger(__name__)


def create_app(nbjobs: NbJobs, *, sync_interval: float | None = None) -> FastAPI:
    """The web app. It does not start or stop ``nbjobs``; it runs the item write-back loop while it serves."""
    settings = nbjobs.settings
    interval = settings.poll_seconds if sync_interval is None else sync_interval

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_sync_items(nbjobs, interval))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="nbjobs",
        version=__version__,
        description="Jupyter notebooks as jobs, behind the ArcGIS Notebook Server administrator API.",
        openapi_url=f"/{settings.context}/openapi.json",
        docs_url=f"/{settings.context}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.nbjobs = nbjobs
    app.state.oauth_key = secrets.token_bytes(32)
    root = APIRouter(prefix=f"/{settings.context}")
    for router in (portal.router, content.router, tokens.portal, tokens.admin, admin.router, jobs.router,
                   runtimes.router, tasks.router, webhooks.admin, webhooks.events,
                   machines.router, webtools.router, gp.router):  # fmt: skip
        root.include_router(router)
    app.include_router(root)

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        return RedirectResponse(f"/{settings.context}/admin")

    install_error_handlers(app, settings.context)
    app.add_middleware(
        Guard,
        max_body=settings.max_upload_bytes,
        context=settings.context,
        max_request=settings.max_request_bytes,
        max_webhook=settings.webhook_max_body_bytes,
    )
    return app


async def _sync_items(nbjobs: NbJobs, interval: float) -> None:
    """Write executed notebooks back to their items (updatePortalItem=true) as their jobs end."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(nbjobs.notebooks.sync_item_updates)
        except Exception:
            log.exception("writing executed notebooks back to items failed; will retry")
