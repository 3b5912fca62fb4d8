"""Web tool parameters as a notebook declares them: the metadata format, inference and static checks.

A notebook registers its web tool parameters in its own metadata::

    "metadata": {"nbjobs": {"webtool": {
        "inputs":  [{"name": "radius", "type": "Double", "required": false,
                     "displayName": "Radius", "description": "in metres"}],
        "outputs": [{"name": "area", "type": "Double"}]}}}

Inputs are variables of the ``parameters`` cell; outputs are variables the notebook assigns. An input
without a ``type`` takes the type of its default value in the ``parameters`` cell when that is obvious
(str, int, float, bool).
"""

from __future__ import annotations

import ast
import copy
import json
import keyword
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nbformat import NotebookNode

from nbjobs.errors import InvalidRequest
from nbjobs.execution.notebook_io import read_notebook, write_notebook
from nbjobs.execution.parameters import PARAMETERS_TAG

METADATA_KEY = "nbjobs"
WEBTOOL_KEY = "webtool"
INPUT = "esriGPParameterDirectionInput"
OUTPUT = "esriGPParameterDirectionOutput"


class ParamType(StrEnum):
    """The data types a web tool parameter may have; the value is the name used in notebook metadata."""

    STRING = "String"
    LONG = "Long"
    DOUBLE = "Double"
    BOOLEAN = "Boolean"
    DATE = "Date"
    RECORD_SET = "RecordSet"
    FEATURE_SET = "FeatureSet"
    FILE = "File"

    @property
    def gp(self) -> str:
        """The ArcGIS geoprocessing ``dataType``."""
        return _GP_TYPES[self]

    @classmethod
    def parse(cls, text: str) -> ParamType:
        """A type from its metadata name, a spelled-out alias (``Record set``) or its GP name (``GPLong``)."""
        key = "".join(ch for ch in str(text).lower() if ch.isalnum())
        found = _ALIASES.get(key) or _ALIASES.get(key.removeprefix("gp"))
        if found is None:
            names = ", ".join(t.value for t in cls)
            raise InvalidRequest(f"Unknown web tool parameter type {text!r}: use one of {names}.")
        return found


_GP_TYPES = {
    ParamType.STRING: "GPString",
    ParamType.LONG: "GPLong",
    ParamType.DOUBLE: "GPDouble",
    ParamType.BOOLEAN: "GPBoolean",
    ParamType.DATE: "GPDate",
    ParamType.RECORD_SET: "GPRecordSet",
    ParamType.FEATURE_SET: "GPFeatureRecordSetLayer",
    ParamType.FILE: "GPDataFile",
}
_ALIASES: dict[str, ParamType] = {t.value.lower(): t for t in ParamType} | {
    "str": ParamType.STRING,
    "text": ParamType.STRING,
    "int": ParamType.LONG,
    "integer": ParamType.LONG,
    "float": ParamType.DOUBLE,
    "bool": ParamType.BOOLEAN,
    "datetime": ParamType.DATE,
    "table": ParamType.RECORD_SET,
    "featurerecordsetlayer": ParamType.FEATURE_SET,
    "featureclass": ParamType.FEATURE_SET,
    "datafile": ParamType.FILE,
}
_INFERRED = {str: ParamType.STRING, bool: ParamType.BOOLEAN, int: ParamType.LONG, float: ParamType.DOUBLE}


@dataclass(frozen=True)
class ToolParam:
    """One registered parameter. ``default`` is the notebook's own value (inputs), reported, never sent."""

    name: str
    type: ParamType
    direction: str = INPUT
    required: bool = False
    display_name: str = ""
    description: str = ""
    default: Any = None

    @property
    def label(self) -> str:
        return self.display_name or self.name

    def to_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type.value}
        if self.direction == INPUT and self.required:
            out["required"] = True
        if self.display_name:
            out["displayName"] = self.display_name
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class ToolParams:
    """The inputs and outputs of a web tool, in declaration order."""

    inputs: tuple[ToolParam, ...] = ()
    outputs: tuple[ToolParam, ...] = ()

    def input(self, name: str) -> ToolParam | None:
        return next((p for p in self.inputs if p.name == name), None)

    def output(self, name: str) -> ToolParam | None:
        return next((p for p in self.outputs if p.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [{**p.to_metadata(), "defaultValue": p.default} for p in self.inputs],
            "outputs": [p.to_metadata() for p in self.outputs],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolParams:
        """The form ``to_json`` wrote (stored definitions; already checked when published)."""
        return cls(
            inputs=tuple(_stored(p, INPUT) for p in data.get("inputs") or ()),
            outputs=tuple(_stored(p, OUTPUT) for p in data.get("outputs") or ()),
        )


def _stored(p: Mapping[str, Any], direction: str) -> ToolParam:
    return ToolParam(
        name=p["name"],
        type=ParamType.parse(p["type"]),
        direction=direction,
        required=bool(p.get("required", False)),
        display_name=p.get("displayName", ""),
        description=p.get("description", ""),
        default=p.get("defaultValue"),
    )


@dataclass
class Analysis:
    """What analyzeNotebook answers: errors block publishing, warnings do not."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    params: ToolParams = field(default_factory=ToolParams)

    def to_wire(self) -> dict[str, Any]:
        return {
            "errors": self.errors,
            "warnings": self.warnings,
            "messages": self.messages,
            "status": "success",
        }


# -- reading a notebook ------------------------------------------------------------------------------


def declared(nb: NotebookNode) -> dict[str, Any]:
    """The raw ``metadata.nbjobs.webtool`` object of a notebook ({} when absent)."""
    section = nb.metadata.get(METADATA_KEY, {}).get(WEBTOOL_KEY, {})
    return dict(section) if isinstance(section, Mapping) else {}


def parameter_defaults(nb: NotebookNode) -> dict[str, Any]:
    """Names assigned a literal in the first ``parameters`` cell, with their values (others: ``...``)."""
    cell = next((c for c in nb.cells if c.cell_type == "code" and PARAMETERS_TAG in _tags(c)), None)
    if cell is None:
        return {}
    tree = _parse(cell.source)
    if tree is None:
        return {}
    defaults: dict[str, Any] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name):
                defaults[target.id] = _literal(value)
    return defaults


def assigned_names(nb: NotebookNode) -> tuple[set[str], bool]:
    """Every name some code cell binds, and whether every code cell could be parsed."""
    names: set[str] = set()
    complete = True
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = _parse(cell.source)
        if tree is None:
            complete = False
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.Global | ast.Nonlocal):
                names.update(node.names)
    return names, complete


def analyze(data: bytes) -> Analysis:
    """Check a notebook's web tool declarations against its code, in the analyzeNotebook shape."""
    result = Analysis()
    try:
        nb = read_notebook(data)
    except InvalidRequest as exc:
        result.errors.append(exc.message)
        return result
    section = declared(nb)
    defaults = parameter_defaults(nb)
    assigned, complete = assigned_names(nb)
    inputs: list[ToolParam] = []
    outputs: list[ToolParam] = []
    seen: set[str] = set()
    for raw in _entries(section, "inputs", result):
        param = _declared_param(raw, INPUT, defaults, result, seen)
        if param is None:
            continue
        if param.name not in defaults:
            result.warnings.append(f"Unable to find webtool input parameter '{param.name}' in the Notebook.")
        inputs.append(param)
    for raw in _entries(section, "outputs", result):
        param = _declared_param(raw, OUTPUT, {}, result, seen)
        if param is None:
            continue
        if complete and param.name not in assigned:
            result.warnings.append(
                f"Invalid webtool output parameter '{param.name}': the notebook never assigns it."
            )
        outputs.append(param)
    if not complete:
        result.messages.append("Some cells are not plain Python (magics?); outputs were not checked.")
    if defaults == {} and not any(PARAMETERS_TAG in _tags(c) for c in nb.cells):
        result.messages.append("The notebook has no cell tagged 'parameters'.")
    result.messages.append(f"{len(inputs)} input and {len(outputs)} output parameters registered.")
    result.params = ToolParams(tuple(inputs), tuple(outputs))
    return result


def _entries(section: Mapping[str, Any], key: str, result: Analysis) -> list[Any]:
    raw = section.get(key, [])
    if not isinstance(raw, list):
        result.errors.append(f"metadata.{METADATA_KEY}.{WEBTOOL_KEY}.{key} must be a list.")
        return []
    return raw


def _declared_param(
    raw: Any, direction: str, defaults: Mapping[str, Any], result: Analysis, seen: set[str]
) -> ToolParam | None:
    kind = "input" if direction == INPUT else "output"
    if not isinstance(raw, Mapping):
        result.errors.append(f"Invalid webtool {kind} parameter {raw!r}: expected an object with a name.")
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        result.errors.append(f"Invalid webtool {kind} parameter name {name!r}: use a Python variable name.")
        return None
    if name in seen:
        result.errors.append(f"Webtool parameter '{name}' is registered twice.")
        return None
    seen.add(name)
    default = defaults.get(name)
    declared_type = raw.get("type")
    ptype: ParamType | None
    if declared_type:
        try:
            ptype = ParamType.parse(declared_type)
        except InvalidRequest as exc:
            result.errors.append(f"Webtool {kind} parameter '{name}': {exc.message}")
            return None
    else:
        ptype = _INFERRED.get(type(default))
        if ptype is None:
            result.errors.append(
                f"Webtool {kind} parameter '{name}' has no type and none can be inferred from its value."
            )
            return None
    return ToolParam(
        name=name,
        type=ptype,
        direction=direction,
        required=bool(raw.get("required", False)) if direction == INPUT else False,
        display_name=str(raw.get("displayName") or ""),
        description=str(raw.get("description") or ""),
        default=_json_default(default) if direction == INPUT else None,
    )


# -- writing a notebook ------------------------------------------------------------------------------


def register(data: bytes, inputs: Iterable[str], outputs: Iterable[str]) -> tuple[bytes, Analysis]:
    """Add or replace parameters in a notebook's metadata from ``name[:Type[:required]]`` specs."""
    nb = read_notebook(data)
    section = declared(nb)
    for key, specs in (("inputs", list(inputs)), ("outputs", list(outputs))):
        entries = [e for e in section.get(key, []) if isinstance(e, Mapping)]
        for spec in specs:
            entry = _spec_entry(spec, key == "inputs")
            entries = [e for e in entries if e.get("name") != entry["name"]] + [entry]
        section[key] = entries
    nb = copy.deepcopy(nb)
    nb.metadata.setdefault(METADATA_KEY, {})[WEBTOOL_KEY] = section
    written = write_notebook(nb)
    return written, analyze(written)


def _spec_entry(spec: str, is_input: bool) -> dict[str, Any]:
    parts = spec.split(":")
    name = parts[0].strip()
    if not name or len(parts) > 3 or (len(parts) == 3 and parts[2].strip().lower() != "required"):
        raise InvalidRequest(f"Invalid parameter {spec!r}: use NAME, NAME:TYPE or NAME:TYPE:required.")
    entry: dict[str, Any] = {"name": name}
    if len(parts) > 1 and parts[1].strip():
        entry["type"] = ParamType.parse(parts[1]).value
    if len(parts) == 3:
        if not is_input:
            raise InvalidRequest(f"Invalid output {spec!r}: only inputs can be required.")
        entry["required"] = True
    return entry


# -- small parsers -----------------------------------------------------------------------------------


def _tags(cell: NotebookNode) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, list) else []


def _parse(source: str | list[str]) -> ast.Module | None:
    """A cell's Python, with IPython magics and shell escapes blanked; None if it is not Python."""
    text = "".join(source) if isinstance(source, list) else source
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in text.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError):
        return None


def _literal(node: ast.expr | None) -> Any:
    if node is None:
        return ...
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return ...


def _json_default(value: Any) -> Any:
    """The default as a JSON value for the task page (None when it is not a plain literal)."""
    if value is ...:
        return None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return value
