"""Request parameters the ArcGIS way: query string and form fields in one bag, typed strictly on read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from nbjobs.errors import InvalidRequest

FORMATS = ("html", "json", "pjson")
INT64 = 2**63
MAX_FIELDS = 1000  # form fields per request
MAX_FILES = 10  # uploaded files per request
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass
class Params:
    """Query and form values (form wins) plus uploaded files; getters raise InvalidRequest on bad input."""

    values: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadFile] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return format_of(self.values.get("f"))

    def text(self, name: str, default: str = "") -> str:
        value = self.values.get(name)
        return default if value is None else value.strip()

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw == "":
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise InvalidRequest(f"Invalid value for '{name}': {raw!r} (expected true or false).")

    def integer(
        self, name: str, default: int | None, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        raw = self.text(name)
        if raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            try:
                as_float = float(raw)
            except ValueError:
                as_float = float("nan")
            if not as_float.is_integer():
                raise InvalidRequest(f"Invalid value for '{name}': {raw!r} (expected an integer).") from None
            value = int(as_float)
        if minimum is not None and value < minimum:
            raise InvalidRequest(f"Invalid value for '{name}': {raw!r} (must be at least {minimum}).")
        if maximum is not None and value > maximum:
            raise InvalidRequest(f"Invalid value for '{name}': {raw!r} (must be at most {maximum}).")
        if not -INT64 <= value < INT64:  # what every integer column (and ArcGIS's Java long) holds
            raise InvalidRequest(f"Invalid value for '{name}': {raw!r} (out of the 64-bit integer range).")
        return value

    def json_object(self, name: str) -> dict[str, Any] | None:
        raw = self.text(name)
        if raw == "":
            return None
        try:
            value = json.loads(raw)
        except RecursionError:
            raise InvalidRequest(f"Invalid value for '{name}': JSON nested too deeply.") from None
        except ValueError:
            raise InvalidRequest(f"Invalid value for '{name}': not valid JSON.") from None
        if not isinstance(value, dict):
            raise InvalidRequest(f"Invalid value for '{name}': expected a JSON object.")
        return value

    def words(self, name: str) -> tuple[str, ...] | None:
        """A comma-separated list (or a JSON array) as a tuple; None when absent."""
        raw = self.values.get(name)
        if raw is None:
            return None
        raw = raw.strip()
        if raw.startswith("["):
            try:
                parsed = json.loads(raw)
            except (ValueError, RecursionError):
                raise InvalidRequest(f"Invalid value for '{name}': not valid JSON.") from None
            if not isinstance(parsed, list) or any(isinstance(v, list | dict) for v in parsed):
                raise InvalidRequest(f"Invalid value for '{name}': expected a JSON array of words.")
            return tuple(str(v).strip() for v in parsed if str(v).strip())
        return tuple(w.strip() for w in raw.split(",") if w.strip())


def format_of(raw: str | None) -> str:
    """The response format asked for; unknown or absent means html, as ArcGIS does."""
    value = (raw or "").strip().lower()
    return value if value in FORMATS else "html"


async def read_params(request: Request) -> Params:
    """Parse once per request (cached on request.state): query string, then the form body on top."""
    cached = getattr(request.state, "params", None)
    if cached is not None:
        return cached
    params = Params(values=dict(request.query_params))
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and (
        content_type.startswith("application/x-www-form-urlencoded")
        or content_type.startswith("multipart/form-data")
    ):
        # One form field may be as large as an ordinary request body (the Guard bounds the body itself).
        max_field = request.app.state.services.settings.limits.max_request_bytes
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS, max_part_size=max_field)
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                params.files[key] = value
            else:
                params.values[key] = value
    request.state.params = params
    return params
