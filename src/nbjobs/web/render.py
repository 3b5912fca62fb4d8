"""Responses in the three ArcGIS formats: json, pjson and a browsable html page of the same data."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from nbjobs.web.params import format_of

TOKEN_COOKIE = "nbjobs_token"


@dataclass(frozen=True)
class Link:
    """A child resource, as a path relative to the current resource (or absolute when it starts with /)."""

    label: str
    href: str


@dataclass(frozen=True)
class Operation:
    """A form on the html page: POST ``href`` with these fields (a ``file`` field makes it multipart)."""

    name: str
    href: str
    fields: tuple[str, ...] = ()


def request_format(request: Request) -> str:
    params = request.scope.get("state", {}).get("params")
    if params is not None:
        return params.format
    if request.method == "POST" and "f" not in request.query_params:
        return "json"  # the body (and its f) was never read, e.g. too large: answer the API client in JSON
    return format_of(request.query_params.get("f"))


def respond(
    request: Request,
    data: Any,
    *,
    title: str = "",
    links: Sequence[Link] = (),
    operations: Sequence[Operation] = (),
    frame: Link | None = None,
) -> Response:
    """Render ``data`` as the request's ``f`` asks (HTTP 200, like ArcGIS); ``frame`` is a page the html
    view embeds in a fully sandboxed iframe (no scripts, opaque origin)."""
    fmt = request_format(request)
    if fmt == "json":
        return Response(_dumps(data), media_type="application/json")
    if fmt == "pjson":
        return Response(_dumps(data, indent=2), media_type="application/json")
    return HTMLResponse(page(request, title or request.url.path, data, links, operations, frame))


def _dumps(data: Any, indent: int | None = None) -> str:
    """Strict JSON: a NaN or infinity (a notebook parameter may be one) is sent as the string Python's
    json module would write bare ("NaN", "Infinity", "-Infinity"), which no JSON parser accepts."""
    separators = (",", ":") if indent is None else None
    try:
        return json.dumps(data, separators=separators, indent=indent, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(data), separators=separators, indent=indent, ensure_ascii=False)


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return json.dumps(data)
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def page(
    request: Request,
    title: str,
    data: Any,
    links: Sequence[Link],
    operations: Sequence[Operation],
    frame: Link | None = None,
) -> str:
    """A minimal page: the resource as JSON, links to its children, one form per operation."""
    base = request.url.path.rstrip("/")
    token = request.cookies.get(TOKEN_COOKIE, "")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}pre{background:#f4f4f4;"
        "padding:1em;overflow:auto}form{border:1px solid #ddd;padding:.5em;margin:.5em 0}"
        "label{display:block;margin:.2em 0}iframe{width:100%;height:40em;border:1px solid #ddd}"
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p><a href='{html.escape(base)}?f=pjson'>JSON</a></p>",
    ]
    if links:
        parts.append("<h2>Child resources</h2><ul>")
        for link in links:
            href = link.href if link.href.startswith("/") else f"{base}/{link.href}"
            parts.append(f"<li><a href='{html.escape(href)}'>{html.escape(link.label)}</a></li>")
        parts.append("</ul>")
    if operations:
        parts.append("<h2>Supported operations</h2>")
        for op in operations:
            href = op.href if op.href.startswith("/") else f"{base}/{op.href}"
            multipart = "file" in op.fields
            enctype = " enctype='multipart/form-data'" if multipart else ""
            parts.append(f"<form method='post' action='{html.escape(href)}'{enctype}>")
            parts.append(f"<strong>{html.escape(op.name)}</strong>")
            for name in op.fields:
                kind = "file" if name == "file" else ("password" if name == "password" else "text")
                parts.append(
                    f"<label>{html.escape(name)} <input type='{kind}' name='{html.escape(name)}'></label>"
                )
            if token:
                parts.append(f"<input type='hidden' name='token' value='{html.escape(token)}'>")
            parts.append("<input type='hidden' name='f' value='html'><button>Submit</button></form>")
    if frame is not None:
        href = frame.href if frame.href.startswith("/") else f"{base}/{frame.href}"
        label = html.escape(frame.label)
        parts.append(f"<h2>{label}</h2><iframe sandbox src='{html.escape(href)}' title='{label}'></iframe>")
    parts.append("<h2>JSON</h2><pre>")
    parts.append(html.escape(json.dumps(data, indent=2, ensure_ascii=False)))
    parts.append("</pre></body></html>")
    return "".join(parts)
