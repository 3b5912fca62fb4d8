"""Registering ArcGIS-style routes: one endpoint for GET and POST, each documented in OpenAPI."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter

_F = {"name": "f", "description": "Response format: html (default), json or pjson."}
_TOKEN = {"name": "token", "description": "Access token (or X-Esri-Authorization: Bearer <token>)."}


def operation(
    router: APIRouter,
    path: str,
    *,
    summary: str,
    methods: Sequence[str] = ("GET", "POST"),
    fields: Sequence[str] = (),
    multipart: bool = False,
    tags: Sequence[str] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Route ``path`` for each of ``methods``; ``fields`` are documented as query/form parameters."""

    def decorate(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        for method in methods:
            router.add_api_route(
                path,
                endpoint,
                methods=[method],
                summary=summary,
                tags=list(tags),
                operation_id=f"{endpoint.__name__}_{method.lower()}",
                openapi_extra=_document(method, fields, multipart),
            )
        return endpoint

    return decorate


def _document(method: str, fields: Sequence[str], multipart: bool) -> dict[str, Any]:
    names = [_F["name"], _TOKEN["name"], *fields]
    if method == "GET":
        return {
            "parameters": [
                {"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in names
            ]
        }
    media = "multipart/form-data" if multipart else "application/x-www-form-urlencoded"
    props: dict[str, Any] = {n: {"type": "string"} for n in names}
    if multipart:
        props["file"] = {"type": "string", "format": "binary"}
    return {"requestBody": {"content": {media: {"schema": {"type": "object", "properties": props}}}}}
