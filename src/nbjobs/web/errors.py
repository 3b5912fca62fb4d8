"""The one place that turns failures into ArcGIS error envelopes.

Admin routes answer ``{"status":"error","messages":[…],"code":N}``; portal and rest routes answer
``{"error":{"code":N,"message":…,"details":[…]}}``. Both with HTTP 200, because ArcGIS clients read the
body, and because the ArcGIS client retries any HTTP 5xx (POSTs included), which must never happen
to an operation that may already have created a job.
"""

from __future__ import annotations

import errno
import json
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import DiskFull, NbJobsError, StoreUnavailable
from nbjobs.web.render import request_format, respond

log = logging.getLogger(__name__)

UNEXPECTED = "An unexpected error occurred on the server; it has been logged."
_HTTP_MESSAGES = {
    404: "Resource not found.",
    405: "Method not supported.",
    413: "The request body is larger than this server accepts.",
}


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def error_code_message(exc: BaseException) -> tuple[int, str, list[str]]:
    """(code, message, details) for any exception, the single table clients see."""
    if _disk_full(exc):  # a file under the data dir
        exc = DiskFull()
    if isinstance(exc, NbJobsError):
        return exc.code, exc.message, list(exc.details)
    if isinstance(exc, RequestValidationError):
        details = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return 400, "Invalid request parameters.", details
    if isinstance(exc, StarletteHTTPException):
        code = exc.status_code
        message = _HTTP_MESSAGES.get(code) or (
            exc.detail if isinstance(exc.detail, str) else "Request failed."
        )
        return code, message, []
    return 500, UNEXPECTED, []


def is_admin_path(path: str, context: str) -> bool:
    prefix = f"/{context}/admin"
    return path == prefix or path.startswith(prefix + "/")


def envelope(admin: bool, code: int, message: str, details: list[str]) -> dict[str, Any]:
    if admin:
        return {"status": "error", "messages": [message, *details], "code": code}
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(request: Request, exc: BaseException, context: str) -> Response:
    code, message, details = error_code_message(exc)
    if isinstance(exc, StoreUnavailable) or _disk_full(exc):
        # an outage the operator must see, not a bug: one line, with the driver's own words
        log.warning("%s %s: %s (%s)", request.method, request.url.path, message, exc.__cause__ or exc)
    elif code >= 500 and not isinstance(exc, NbJobsError):
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    body = envelope(is_admin_path(request.url.path, context), code, message, details)
    if request.url.path.startswith(f"/{context}/notebooks/"):
        # JupyterLab through the proxy: a real HTTP status (its client reads it), the portal envelope
        status = code if 400 <= code < 600 else 400
        if "text/html" in request.headers.get("accept", "") and request_format(request) == "html":
            page = respond(request, body, title=f"Error {code}")
            page.status_code = status
            return page
        return Response(json.dumps(body), status_code=status, media_type="application/json")
    return respond(request, body, title=f"Error {code}")


def install_error_handlers(app: FastAPI, context: str) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(request, exc, context)

    app.add_exception_handler(NbJobsError, handle)
    app.add_exception_handler(RequestValidationError, handle)
    app.add_exception_handler(StarletteHTTPException, handle)
