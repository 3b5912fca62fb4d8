"""An executed notebook as an HTML page that cannot act in the server's origin.

A notebook's outputs are whatever its code printed: ``<script>``, ``display(HTML(...))``,
``display(Javascript(...))``. Rendered as-is and served from this server they would run as the viewer,
with the viewer's cookie. So the page is served with a CSP ``sandbox`` (no ``allow-scripts``, no
``allow-same-origin``: an opaque origin where nothing runs) and ``default-src 'none'`` (no script, no
fetch, no external resource; only inline styles and ``data:`` images), and the job page embeds it in an
``<iframe sandbox>`` as a second, independent wall.
"""

from __future__ import annotations

import asyncio
import re
import uuid

import nbformat
from starlette.responses import Response

from nbjobs.errors import InvalidNotebook

NOTEBOOK_CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)
NOTEBOOK_HEADERS = {
    "Content-Security-Policy": NOTEBOOK_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",  # only the job page (same origin) may frame it
    "Content-Disposition": "inline",
}
_CELL_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")


def notebook_html(data: bytes) -> str:
    """The notebook rendered by nbconvert's HTMLExporter (lab template), outputs included unfiltered."""
    from nbconvert import HTMLExporter  # imported on first use: it loads Jinja templates and Pygments

    try:  # nbformat.reads would validate and warn about what _unique_cell_ids fixes quietly
        node = nbformat.reader.reads(data.decode("utf-8"))
        if node.get("nbformat") != 4:
            node = nbformat.convert(node, 4)
        if not isinstance(node.get("cells"), list):
            raise ValueError("not a notebook document")
        _unique_cell_ids(node)
        body, _resources = HTMLExporter().from_notebook_node(node)
    # ValueError covers UnicodeDecodeError and JSONDecodeError; the others are JSON of the wrong shape
    except (ValueError, TypeError, AttributeError, KeyError, nbformat.ValidationError) as exc:
        raise InvalidNotebook("The job's output is not a readable notebook.") from exc
    return body


def _unique_cell_ids(node: nbformat.NotebookNode) -> None:
    """Give every cell a unique valid id, as the exporter would (it warns while doing so)."""
    seen: set[str] = set()
    for cell in node.get("cells", []):
        if not isinstance(cell, dict):
            raise ValueError("a cell is not an object")
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not _CELL_ID.match(cell_id) or cell_id in seen:
            cell_id = uuid.uuid4().hex[:8]
            cell["id"] = cell_id
        seen.add(cell_id)
    node["nbformat_minor"] = max(5, int(node.get("nbformat_minor", 5) or 5))


async def notebook_html_response(data: bytes) -> Response:
    """The sandboxed HTML page of ``data`` (rendered off the event loop: a large notebook takes a while)."""
    body = await asyncio.to_thread(notebook_html, data)
    return Response(body, media_type="text/html; charset=utf-8", headers=NOTEBOOK_HEADERS)
