"""The run form of a notebook: one typed input per name its ``parameters`` cell assigns, and the server's
reading of what was submitted.

The cell is read by the server's own reader (``service.webtools.params.parameter_defaults``, what the web
tools use); the values go through ``models.parameters.parse_parameters`` like any ``notebookParameters``.
A field's kind comes from the default's type, decided here on the server again at submit time, never from
the page. A name whose default is not a literal (``...``) or ``None`` is a JSON field left empty.

A web tool's "try it" form uses the same fields and markup, typed by the tool's declared GP types instead
(``tool_fields``); its values go, as text, to ``WebToolService.submit``, which converts them as it does for
any GP client.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nbjobs.errors import InvalidParameters
from nbjobs.execution.notebook_io import read_notebook
from nbjobs.models.parameters import NotebookParameters, parse_parameters
from nbjobs.service.webtools.params import ParamType, ToolParams, parameter_defaults

NUMBER = "number"
TEXT = "text"
BOOLEAN = "boolean"
JSON = "json"
DATE = "date"  # web tool Date inputs: ISO 8601 text or epoch milliseconds (checked by the server)
PREFIX = "p."  # form field of parameter NAME: "p.NAME"
MORE = "moreParameters"  # a JSON object of extra names, merged last
NUMBER_PATTERN = r"[\-+]?(\d+\.?\d*|\.\d+)([eE][\-+]?\d+)?"
_NUMBER = re.compile(NUMBER_PATTERN)
_INTEGER = re.compile(r"[\-+]?\d+")


@dataclass(frozen=True)
class Field:
    """One input of the run form: its name, kind, text value (JSON for JSON fields) and any error."""

    name: str
    kind: str
    value: str
    default: str
    error: str = ""
    label: str = ""  # web tool inputs: the declared display name, description, type and whether required
    description: str = ""
    type_name: str = ""
    hint: str = ""
    required: bool = False

    @property
    def checked(self) -> bool:
        return self.kind == BOOLEAN and self.value == "true"


def kind_of(default: Any) -> str:
    if isinstance(default, bool):
        return BOOLEAN
    if isinstance(default, int | float):
        return NUMBER
    if isinstance(default, str):
        return TEXT
    return JSON


def as_text(kind: str, value: Any) -> str:
    if value is ...:
        return ""
    if kind == BOOLEAN:
        return "true" if value else "false"
    if kind == TEXT:
        return str(value)
    if kind == NUMBER:
        return repr(value)
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return ""


def notebook_defaults(data: bytes) -> dict[str, Any]:
    """The names the notebook's ``parameters`` cell assigns, with their literal defaults (``...``: none)."""
    return parameter_defaults(read_notebook(data))


def fields_of(defaults: Mapping[str, Any], given: Mapping[str, Any] | None = None) -> list[Field]:
    """The form's fields, filled with ``given`` (a job's parameters, to run again) over the defaults."""
    fields = []
    for name, default in defaults.items():
        kind = kind_of(default)
        value = given[name] if given is not None and name in given else default
        if kind != JSON and kind_of(value) != kind:
            kind = JSON  # a run that gave another type: show it as JSON rather than lose it
        fields.append(Field(name, kind, as_text(kind, value), as_text(kind, default)))
    return fields


def extra_of(defaults: Mapping[str, Any], given: Mapping[str, Any] | None) -> str:
    """``given``'s names the cell does not assign, as the JSON of the extra-parameters box."""
    extra = {k: v for k, v in (given or {}).items() if k not in defaults}
    return json.dumps(extra) if extra else ""


def parse_value(kind: str, text: str) -> Any:
    """The submitted text as its kind's value; ValueError with a message a person can act on."""
    if kind == BOOLEAN:
        if text not in ("true", "false"):
            raise ValueError("must be true or false")
        return text == "true"
    if kind == TEXT:
        return text
    if kind == NUMBER:
        text = text.strip()
        if not _NUMBER.fullmatch(text):
            raise ValueError("must be a number, such as 3 or 2.5")
        number = int(text) if _INTEGER.fullmatch(text) else float(text)
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError("must be a finite number")
        return number
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(
            f"must be JSON (a list [..], an object {{..}}, a number, a string in quotes): {exc}"
        ) from None


def read_form(
    defaults: Mapping[str, Any], form: Mapping[str, str]
) -> tuple[NotebookParameters | None, list[Field], str]:
    """The parameters a run form asks for (only the values that differ from the cell's defaults), or
    None with the fields re-filled and their errors; and the extra box's text."""
    chosen: dict[str, Any] = {}
    fields: list[Field] = []
    failed = False
    for name, default in defaults.items():
        kind = kind_of(default)
        key = PREFIX + name
        text = form.get(key, "false" if kind == BOOLEAN else "")
        if kind == BOOLEAN and text == "on":
            text = "true"
        error = ""
        if kind not in (NUMBER, JSON) or text.strip():  # an empty number or JSON keeps the default
            try:
                value = parse_value(kind, text)
                if isinstance(default, float) and isinstance(value, int):
                    value = float(value)  # "3" in a field whose default is 0.5 is still a float
                if value != default or type(value) is not type(default):
                    chosen[name] = value
            except ValueError as exc:
                error = str(exc)
        failed = failed or bool(error)
        fields.append(Field(name, kind, text, as_text(kind, default), error))
    more = form.get(MORE, "").strip()
    if more:
        try:
            extra = json.loads(more)
        except ValueError as exc:
            raise InvalidParameters(f"Extra parameters must be a JSON object: {exc}") from None
        if not isinstance(extra, dict):
            raise InvalidParameters("Extra parameters must be a JSON object of names to values.")
        chosen.update(extra)
    if failed:
        return None, fields, more
    return parse_parameters(chosen), fields, more


# -- a web tool's "try it" form ------------------------------------------------------------------------

_TOOL_KINDS = {
    ParamType.STRING: TEXT,
    ParamType.LONG: NUMBER,
    ParamType.DOUBLE: NUMBER,
    ParamType.BOOLEAN: BOOLEAN,
    ParamType.DATE: DATE,
    ParamType.RECORD_SET: JSON,
    ParamType.FEATURE_SET: JSON,
    ParamType.FILE: TEXT,
}
_TOOL_HINTS = {
    ParamType.STRING: "",
    ParamType.LONG: "A whole number.",
    ParamType.DOUBLE: "A number.",
    ParamType.BOOLEAN: "",
    ParamType.DATE: "A date: 2026-01-31, 2026-01-31T09:30:00Z or epoch milliseconds (UTC unless it says).",
    ParamType.RECORD_SET: 'A JSON object with a "features" list (or a "url").',
    ParamType.FEATURE_SET: 'A JSON object with a "features" list (or a "url").',
    ParamType.FILE: 'An http(s) URL, or JSON {"url": …} or {"itemID": …}.',
}


def _tool_text(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind in (TEXT, DATE):
        return value if isinstance(value, str) else json.dumps(value)
    return as_text(kind, value)


def tool_fields(
    params: ToolParams, values: Mapping[str, str] | None = None, errors: Mapping[str, str] | None = None
) -> list[Field]:
    """The try-it form of a web tool task: one field per input, typed by its declared type, filled with the
    notebook's own values, or with ``values`` (what was submitted, to correct) and each input's error."""
    fields = []
    for param in params.inputs:
        kind = _TOOL_KINDS[param.type]
        default = _tool_text(kind, param.default)
        value = default if values is None else values.get(param.name, "false" if kind == BOOLEAN else "")
        fields.append(
            Field(
                param.name, kind, value, default, (errors or {}).get(param.name, ""), label=param.label,
                description=param.description, type_name=param.type.value, hint=_TOOL_HINTS[param.type],
                required=param.required,
            )
        )  # fmt: skip
    return fields


def tool_values(params: ToolParams, form: Mapping[str, str]) -> dict[str, str]:
    """The try-it form's values as a GP request sends them: the text of each input (an empty one is left
    out, so the notebook's own value stays), an unchecked checkbox as ``false``. The service converts them."""
    values: dict[str, str] = {}
    for param in params.inputs:
        text = form.get(PREFIX + param.name, "")
        if _TOOL_KINDS[param.type] == BOOLEAN:
            values[param.name] = {"": "false", "on": "true"}.get(text.strip(), text)  # others: as sent
        elif text.strip():
            values[param.name] = text
    return values
