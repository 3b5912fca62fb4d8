"""Web tool values on the wire: GP inputs checked and converted before a job exists, outputs typed after.

Inputs arrive as form text (ArcGIS clients send JSON text for objects); each becomes the JSON value
injected into the ``parameters`` cell. Outputs are the JSON values the engine read back from the kernel;
each becomes the GP result value of its declared type.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from nbjobs.errors import InvalidRequest
from nbjobs.service.webtools.params import ParamType, ToolParam

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class InvalidValue(InvalidRequest):
    """Invalid value for a web tool parameter."""


def convert_input(param: ToolParam, raw: Any) -> Any:
    """The JSON value to inject for ``raw`` (form text or a JSON value), or InvalidValue naming the input."""
    try:
        return _CONVERT[param.type](_unwrap(raw) if param.type in _SCALARS else raw)
    except _Reject as exc:
        raise InvalidValue(
            f"Invalid value for parameter '{param.name}' ({param.type.value}): {exc}",
            details=[f"{param.name}: {_short(raw)}"],
        ) from None


def typed_output(param: ToolParam, value: Any) -> Any:
    """The GP result value of an output, or ValueError saying why the notebook's value does not fit."""
    if value is None:
        return None
    try:
        return _OUTPUT[param.type](value)
    except _Reject as exc:
        raise ValueError(f"output '{param.name}' ({param.type.value}): {exc}") from None


class _Reject(Exception):
    pass


def _short(raw: Any, limit: int = 80) -> str:
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unwrap(raw: Any) -> Any:
    """A scalar sent as form text, or as the JSON object {"value": …} some GP clients send."""
    if isinstance(raw, str) and raw.lstrip().startswith("{"):
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            return raw
        if isinstance(parsed, dict) and "value" in parsed:
            return parsed["value"]
    return raw


def _json(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except RecursionError:
        raise _Reject("the JSON is nested too deeply") from None
    except ValueError:
        raise _Reject(f"{_short(raw)!r} is not valid JSON") from None


# -- inputs ------------------------------------------------------------------------------------------


def _string(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool | int | float):
        return json.dumps(raw)
    raise _Reject("expected text")


def _long(raw: Any) -> int:
    if isinstance(raw, bool):
        raise _Reject("expected an integer, got a boolean")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    text = str(raw).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise _Reject(f"{_short(text)!r} is not an integer") from None
    if not number.is_integer():
        raise _Reject(f"{_short(text)!r} is not an integer")
    return int(number)


def _double(raw: Any) -> float:
    if isinstance(raw, bool):
        raise _Reject("expected a number, got a boolean")
    if isinstance(raw, int | float):
        return float(raw)
    try:
        number = float(str(raw).strip())
    except ValueError:
        raise _Reject(f"{_short(str(raw))!r} is not a number") from None
    if math.isnan(number) or math.isinf(number):
        raise _Reject(f"{_short(str(raw))!r} is not a finite number")
    return number


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Reject(f"{_short(str(raw))!r} is not true or false")


def _date(raw: Any) -> str:
    """Epoch milliseconds (what GP clients send) or ISO 8601 text, as an ISO 8601 UTC string."""
    moment = _moment(raw)
    return moment.isoformat().replace("+00:00", "Z")


def _moment(raw: Any) -> datetime:
    if isinstance(raw, bool):
        raise _Reject("expected epoch milliseconds or an ISO 8601 date")
    text = str(raw).strip()
    try:
        millis = float(text) if not isinstance(raw, int | float) else float(raw)
    except ValueError:
        millis = None
    try:
        if millis is not None:
            return datetime.fromtimestamp(millis / 1000, UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise _Reject(f"{_short(text)!r} is not epoch milliseconds or an ISO 8601 date") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _record_set(raw: Any) -> dict[str, Any]:
    """A record/feature set as JSON: an object with a ``features`` list, or ``{"url": …}``."""
    value = _json(raw)
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return value
    if not isinstance(value, dict) or not isinstance(value.get("features"), list):
        raise _Reject('expected a JSON object with a "features" list (or a "url")')
    for i, feature in enumerate(value["features"]):
        if not isinstance(feature, dict):
            raise _Reject(f"feature {i} is not a JSON object")
        if "attributes" in feature and not isinstance(feature["attributes"], dict):
            raise _Reject(f'feature {i} has "attributes" that are not a JSON object')
    return value


def _file(raw: Any) -> dict[str, Any]:
    """A data file: ``{"url": …}``, ``{"itemID": …}``, or a bare http(s) URL."""
    if isinstance(raw, str) and raw.strip().lower().startswith(("http://", "https://")):
        return {"url": raw.strip()}
    try:
        value = _json(raw)
    except _Reject:
        value = None
    if isinstance(value, dict):
        if isinstance(value.get("url"), str):
            return value
        item = value.get("itemID") or value.get("itemId")
        if isinstance(item, str) and item:
            return {"itemID": item}
    raise _Reject('expected {"url": …}, {"itemID": …} or an http(s) URL')


_SCALARS = frozenset({ParamType.STRING, ParamType.LONG, ParamType.DOUBLE, ParamType.BOOLEAN, ParamType.DATE})
_CONVERT = {
    ParamType.STRING: _string,
    ParamType.LONG: _long,
    ParamType.DOUBLE: _double,
    ParamType.BOOLEAN: _boolean,
    ParamType.DATE: _date,
    ParamType.RECORD_SET: _record_set,
    ParamType.FEATURE_SET: _record_set,
    ParamType.FILE: _file,
}


# -- outputs -----------------------------------------------------------------------------------------


def _out_string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Reject(f"expected a str, got {_kind(value)}")
    return value


def _out_long(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Reject(f"expected an int, got {_kind(value)}")


def _out_double(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _Reject(f"expected a number, got {_kind(value)}")


def _out_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Reject(f"expected a bool, got {_kind(value)}")


def _out_date(value: Any) -> int:
    """GP dates are epoch milliseconds; the engine hands dates over as ISO strings."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        moment = _moment(value)
        return int(moment.timestamp() * 1000)
    raise _Reject(f"expected a date or datetime, got {_kind(value)}")


def _out_record_set(value: Any) -> dict[str, Any]:
    """A FeatureSet (``to_json``), a dict with ``features``, or a list of row dicts."""
    if isinstance(value, str):  # some to_json() return text that is itself JSON
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise _Reject("expected a record set, got text that is not JSON") from None
    if isinstance(value, list) and all(isinstance(row, dict) for row in value):
        return {"features": [{"attributes": row} for row in value]}
    if isinstance(value, dict) and isinstance(value.get("features"), list):
        return value
    raise _Reject(f'expected a FeatureSet, a dict with "features" or a list of dicts, got {_kind(value)}')


def _out_file(value: Any) -> dict[str, Any]:
    if isinstance(value, str) and value.strip():
        return {"url": value.strip()}
    if isinstance(value, dict) and (value.get("url") or value.get("itemID")):
        return value
    raise _Reject(f'expected a URL or {{"url": …}}, got {_kind(value)}')


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    return {
        dict: "a dict",
        list: "a list",
        str: "a str",
        bool: "a bool",
        int: "an int",
        float: "a float",
    }.get(type(value), type(value).__name__)


_OUTPUT = {
    ParamType.STRING: _out_string,
    ParamType.LONG: _out_long,
    ParamType.DOUBLE: _out_double,
    ParamType.BOOLEAN: _out_boolean,
    ParamType.DATE: _out_date,
    ParamType.RECORD_SET: _out_record_set,
    ParamType.FEATURE_SET: _out_record_set,
    ParamType.FILE: _out_file,
}
