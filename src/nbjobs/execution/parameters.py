"""Papermill-compatible injection of notebook parameters into a notebook's cells.

The parameters arrive as one typed value (``nbjobs.models.parameters.NotebookParameters``), parsed at
the edge: this module only places the value's Python literals in a cell and never parses anything.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import nbformat
from nbformat import NotebookNode

from nbjobs.models.parameters import NotebookParameters

INJECTED_TAG = "injected-parameters"
PARAMETERS_TAG = "parameters"
DEFAULT_COMMENT = "# Parameters injected by nbjobs"


def inject_parameters(
    nb: NotebookNode, params: NotebookParameters, *, comment: str = DEFAULT_COMMENT
) -> tuple[NotebookNode, int | None]:
    """Return a copy of ``nb`` with a papermill-style injected-parameters cell, and that cell's index.

    The cell assigns each name its literal from ``params.literals`` as it is: a parsed value's were
    rendered when it was parsed, a stored one's are rendered on this first use (InvalidParameters only
    for a stored value edited by hand, see ``NotebookParameters.trusted``).
    """
    literals = params.literals
    result = copy.deepcopy(nb)
    if not literals:
        return result, None
    lines = [comment] + [f"{name} = {literal}" for name, literal in literals.items()]
    cell = new_cell(result, nbformat.v4.new_code_cell, "\n".join(lines))
    cell.metadata["tags"] = [INJECTED_TAG]
    injected = _first_tagged(result, INJECTED_TAG)
    if injected is not None:
        result.cells[injected] = cell
        return result, injected
    marker = _first_tagged(result, PARAMETERS_TAG)
    index = 0 if marker is None else marker + 1
    result.cells.insert(index, cell)
    return result, index


def remove_injected_cell(nb: NotebookNode, index: int | None) -> NotebookNode:
    """Return a copy of ``nb`` without the cell at ``index`` (an unchanged copy when ``index`` is None)."""
    result = copy.deepcopy(nb)
    if index is not None:
        if not 0 <= index < len(result.cells):
            raise IndexError(f"cell index {index} is out of range")
        del result.cells[index]
    return result


def new_cell(nb: NotebookNode, factory: Callable[..., NotebookNode], source: str) -> NotebookNode:
    """Make a cell with an ``nbformat.v4.new_*_cell`` factory, with a unique ``id`` only if ``nb`` is 4.5+."""
    cell = factory(source=source)
    if nb.get("nbformat_minor", 0) < 5:
        cell.pop("id", None)
        return cell
    taken = {c.get("id") for c in nb.cells}
    while cell.id in taken:
        cell.id = factory().id
    return cell


def _first_tagged(nb: NotebookNode, tag: str) -> int | None:
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if isinstance(tags, list) and tag in tags:
            return index
    return None
