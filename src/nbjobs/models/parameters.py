"""A job's ``notebookParameters`` as one typed, immutable value, and the one parser that makes it.

``parse_parameters`` is the only way in from outside (a request, a task or webhook definition, the CLI):
it decodes, checks and renders each value as Python source once. The rendered literals travel with the
value down to the runner, where ``execution/parameters.py`` pastes them into the injected cell as they
are. Pure Python on purpose: the edges use it without importing the execution layer.
"""

from __future__ import annotations

import datetime
import json
import keyword
import math
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, NoReturn

from nbjobs.errors import InvalidParameters

# Python's parser refuses more than 200 nested brackets; stay well below so an injected cell always compiles.
MAX_DEPTH = 100

_JSON_TYPE_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


class NotebookParameters(Mapping[str, Any]):
    """Names to values, each with its Python literal; read-only, equal to any mapping of the same items.

    Made by ``parse_parameters`` (checked, every literal rendered), ``NotebookParameters()`` (none),
    ``trusted`` (what this server stored earlier) or ``from_json`` (the runner's copy). The values are
    the parsed JSON and are shared, never copied: treat nested lists and dicts as read-only too.
    """

    __slots__ = ("_values", "_literals", "_size", "_not_object")

    _values: dict[str, Any]
    _literals: dict[str, str] | None  # None: not rendered yet (a trusted value before its first use)
    _size: int | None  # compact-JSON bytes, once measured
    _not_object: object  # a trusted value that is not a JSON object (a hand-edited row), else None

    def __init__(self) -> None:
        self._init({}, {}, None)

    def _init(self, values: dict[str, Any], literals: dict[str, str] | None, not_object: object) -> None:
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_literals", literals)
        object.__setattr__(self, "_size", None)
        object.__setattr__(self, "_not_object", not_object)

    @classmethod
    def _make(
        cls, values: dict[str, Any], literals: dict[str, str] | None, not_object: object = None
    ) -> NotebookParameters:
        made = cls.__new__(cls)
        made._init(values, literals, not_object)
        return made

    @classmethod
    def trusted(cls, values: object) -> NotebookParameters:
        """Wrap what this server stored after parsing it (a job row, a task, a webhook receiver).

        Building it does no work, so reading jobs back never re-checks or re-renders anything: the
        store keeps only the wire JSON (no literals, so the wire format and the schema stay as they
        were), and the literals are rendered on first use instead — in the runner process, once per
        run, just before injection and off the server's threads. That rendering keeps its safety checks
        (names, depth, types), so a row edited by hand fails its run with INVALID_PARAMETERS rather than
        pasting something into the notebook; for what the server wrote itself it always succeeds.
        """
        if isinstance(values, NotebookParameters):
            return values
        if isinstance(values, Mapping):
            return cls._make(dict(values), None)
        return cls._make({}, None, values)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NotebookParameters:
        """The value ``to_json`` wrote (the supervisor, for its runner); its literals are used as they are."""
        made = cls.trusted(data.get("values") or {})
        literals = data.get("literals")
        if literals is not None and made._not_object is None:
            object.__setattr__(made, "_literals", dict(literals))
        return made

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form that keeps the rendered literals when there are any (see ``from_json``)."""
        data: dict[str, Any] = {"values": self.to_wire()}
        if self._literals is not None:
            data["literals"] = dict(self._literals)
        return data

    def to_wire(self) -> Any:
        """The ``notebookParameters`` object of the job's wire ``inputs``, as the client sent it."""
        return dict(self._values) if self._not_object is None else self._not_object

    @property
    def literals(self) -> Mapping[str, str]:
        """Each name's value as Python source, in order; rendered now if this value never was."""
        literals = self._literals
        if literals is None:
            if self._not_object is not None:
                _not_an_object(self._not_object)
            literals = _render_all(self._values)
            object.__setattr__(self, "_literals", literals)
        return MappingProxyType(literals)

    @property
    def rendered(self) -> bool:
        """True when the literals are known (parsed, or carried over), so using them renders nothing."""
        return self._literals is not None

    @property
    def json_size(self) -> int:
        """Bytes of the values as compact UTF-8 JSON: what the NBJOBS_MAX_PARAMETER_BYTES limit counts."""
        size = self._size
        if size is None:
            text = json.dumps(self.to_wire(), ensure_ascii=False, separators=(",", ":"), default=str)
            size = len(text.encode())
            object.__setattr__(self, "_size", size)
        return size

    def merged(self, other: NotebookParameters) -> NotebookParameters:
        """These parameters updated with ``other``'s, as ``dict.update`` would (other's values win)."""
        for side in (self, other):
            if side._not_object is not None:
                _not_an_object(side._not_object)
        if not other:
            return self
        if not self:
            return other
        literals = None
        if self._literals is not None and other._literals is not None:
            literals = {**self._literals, **other._literals}
        return NotebookParameters._make({**self._values, **other._values}, literals)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"NotebookParameters({self._values!r})"

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"NotebookParameters is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"NotebookParameters is immutable: cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:  # copy, deepcopy and pickle go through the public form
        return (NotebookParameters.from_json, (self.to_json(),))


def parse_parameters(raw: str | Mapping[str, Any] | None) -> NotebookParameters:
    """Parse and validate ``notebookParameters`` (a JSON text or a mapping), rendering each value once."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return NotebookParameters()
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
        _not_an_object(value)
    if not value:
        return NotebookParameters()
    values = dict(value)
    return NotebookParameters._make(values, _render_all(values))


def _not_an_object(value: object) -> NoReturn:
    kind = "null" if value is None else _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
    raise InvalidParameters(f"notebookParameters must be a JSON object, got {kind}")


def _render_all(values: Mapping[Any, Any]) -> dict[str, str]:
    """Each value's literal by name, after the checks that make pasting it safe: name, depth, type."""
    literals: dict[str, str] = {}
    for name, item in values.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise InvalidParameters(f"parameter name {name!r} is not a valid Python identifier")
        if _deeper_than(item, MAX_DEPTH):
            raise InvalidParameters(_too_deep(f"parameter '{name}'"))
        try:
            literals[name] = render_literal(item, name=name)
        except RecursionError:
            raise InvalidParameters(_too_deep(f"parameter '{name}'")) from None
    return literals


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
