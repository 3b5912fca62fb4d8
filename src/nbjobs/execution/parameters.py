"""ArcGIS/papermill-compatible notebook parameters: parsing, literal rendering and cell injection."""

from __future__ import annotations

import copy
import datetime
import json
import keyword
import math
from collections.abc import Callable, Mapping
from typing import Any

import nbformat
from nbformat import NotebookNode

from nbjobs.errors import InvalidParameters

INJECTED_TAG = "injected-parameters"
PARAMETERS_TAG = "parameters"
DEFAULT_COMMENT = "# Parameters injected by nbjobs"
# Python's parser refuses more than 200 nested brackets; stay well below so an injected cell always compiles.
MAX_DEPTH = 100

_JSON_TYPE_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def parse_parameters(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Parse and validate ``notebookParameters`` (a JSON text or a mapping) into a dict of names to values."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        try:
            value: Any = json.loads(raw)
        except RecursionError:
            raise InvalidParameters(_too_deep("notebookParameters")) from None
        except ValueError as exc:
            raise InvalidParameters(f"notebookParameters is not valid JSON: {exc}") from None
    else:
        value = raw
    if not isinstance(value, Mapping):
        kind = "null" if value is None else _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
        raise InvalidParameters(f"notebookParameters must be a JSON object, got {kind}")
    params: dict[str, Any] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise InvalidParameters(f"parameter name {name!r} is not a valid Python identifier")
        if _deeper_than(item, MAX_DEPTH):
            raise InvalidParameters(_too_deep(f"parameter '{name}'"))
        try:
            render_literal(item, name=name)
        except RecursionError:
            raise InvalidParameters(_too_deep(f"parameter '{name}'")) from None
        params[name] = item
    return params


def _too_deep(what: str) -> str:
    return f"{what} is nested too deeply: at most {MAX_DEPTH} levels of lists and objects"


def _deeper_than(value: Any, limit: int) -> bool:
    """True when ``value`` nests lists/tuples/mappings more than ``limit`` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, Mapping):
            children: Any = current.values()
        elif isinstance(current, list | tuple):
            children = current
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def render_literal(value: Any, *, name: str | None = None) -> str:
    """Render ``value`` as Python source for a literal of the same type (strings are never pasted as code)."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        number = float(value)
        if math.isnan(number):
            return "float('nan')"
        if math.isinf(number):
            return "float('inf')" if number > 0 else "float('-inf')"
        return repr(number)
    if isinstance(value, str):
        return repr(str.__str__(value))  # the characters, even for str subclasses with their own __str__
    if isinstance(value, datetime.date):  # datetime.datetime is a subclass of date
        return repr(value.isoformat())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render_literal(item, name=name) for item in value) + "]"
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if key is not None and not isinstance(key, str | int | float):
                kind = type(key).__name__
                raise InvalidParameters(f"{_label(name)} has a dict key of unsupported type {kind}")
            items.append(f"{render_literal(key, name=name)}: {render_literal(item, name=name)}")
        return "{" + ", ".join(items) + "}"
    raise InvalidParameters(f"{_label(name)} has unsupported type {type(value).__name__}")


def _label(name: str | None) -> str:
    return f"parameter '{name}'" if name is not None else "parameter value"


def inject_parameters(
    nb: NotebookNode, params: Mapping[str, Any], *, comment: str = DEFAULT_COMMENT
) -> tuple[NotebookNode, int | None]:
    """Return a copy of ``nb`` with a papermill-style injected-parameters cell, and that cell's index."""
    result = copy.deepcopy(nb)
    if not params:
        return result, None
    lines = [comment] + [f"{key} = {render_literal(value, name=key)}" for key, value in params.items()]
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


def parse_cli_value(text: str) -> Any:
    """Convert a papermill ``-p NAME VALUE`` string to a bool, None, int or float when it looks like one."""
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    if text in ("None", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


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
