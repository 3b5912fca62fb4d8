"""What a runtime is made of as an admin gives it: the fields of register/update, checked and applied
to a ``RuntimeSpec`` (names, limits and their units), and the runtime a notebook names.
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import math
import os
from dataclasses import dataclass
from typing import Any

from nbjobs.errors import InvalidRequest
from nbjobs.models.runtimes import DEFAULT_RUNTIME, MAX_PRELOAD, START_METHODS, RuntimeSpec
from nbjobs.service.runtimes.kernelspecs import (
    KERNEL_PREFIX,
)

UNITS = ("b", "k", "m", "g")


MAX_NAME = 128


@dataclass(frozen=True)
class RuntimeFields:
    """What a caller may set on a runtime; None leaves a field as it is (or at its default)."""

    name: str | None = None
    python: str | None = None
    image_id: str | None = None  # an installed kernelspec, used when no python is given
    version: str | None = None
    max_cpu: float | None = None
    max_memory: float | None = None
    max_memory_unit: str | None = None
    max_swap_memory: float | None = None
    max_swap_memory_unit: str | None = None
    max_wall_minutes: float | None = None
    max_output_bytes: int | None = None
    requires_advanced_privileges: bool | None = None
    disabled: bool | None = None
    preload: tuple[str, ...] | None = None  # module names; () clears
    start_method: str | None = None  # fork | spawn, any case


def runtime_name_of(notebook: bytes) -> str:
    """The runtime name an ArcGIS notebook records in ``metadata.esriNotebookRuntime``, or ""."""
    try:
        metadata = json.loads(notebook).get("metadata") or {}
    except (ValueError, AttributeError, TypeError):
        return ""
    named = metadata.get("esriNotebookRuntime") if isinstance(metadata, dict) else None
    if isinstance(named, dict):
        named = named.get("notebookRuntimeName")
    return named.strip() if isinstance(named, str) else ""


def _factory_default(now: int) -> RuntimeSpec:
    d = DEFAULT_RUNTIME
    return RuntimeSpec(
        d.runtime_id, d.name, d.version, d.kernel_name, python="", is_default=True, created=now, updated=now
    )


def _owns_kernel(spec: RuntimeSpec) -> bool:
    return spec.kernel_name.startswith(KERNEL_PREFIX) and bool(spec.python)


def _same_env(spec: RuntimeSpec, fields: RuntimeFields, server_python: str) -> bool:
    if fields.python:
        return os.path.abspath(fields.python) == (spec.python or server_python)
    if fields.image_id:
        return fields.image_id.strip() == spec.kernel_name
    return True


def _clean_name(name: str | None) -> str:
    cleaned = (name or "").strip()
    if not cleaned:
        raise InvalidRequest("A runtime needs a name.")
    if len(cleaned) > MAX_NAME:
        raise InvalidRequest(f"A runtime name has at most {MAX_NAME} characters.")
    return cleaned


def _amount(label: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise InvalidRequest(f"Invalid value for '{label}': {value!r} (must be 0 or more; 0 = no limit).")
    return float(value)


def _unit(label: str, value: str) -> str:
    unit = value.strip().lower()
    if unit not in UNITS:
        raise InvalidRequest(f"Invalid value for '{label}': {value!r} (expected one of b, k, m, g).")
    return unit


def _apply_limits(spec: RuntimeSpec, f: RuntimeFields) -> RuntimeSpec:
    changes: dict[str, Any] = {}
    for attr, label in (
        ("max_cpu", "maxCpu"),
        ("max_memory", "maxMemory"),
        ("max_swap_memory", "maxSwapMemory"),
        ("max_wall_minutes", "maxWallMinutes"),
    ):
        if getattr(f, attr) is not None:
            changes[attr] = _amount(label, getattr(f, attr))
    for attr, label in (("max_memory_unit", "maxMemoryUnit"), ("max_swap_memory_unit", "maxSwapMemoryUnit")):
        if getattr(f, attr) is not None:
            changes[attr] = _unit(label, getattr(f, attr))
    if f.max_output_bytes is not None:
        changes["max_output_bytes"] = int(_amount("maxOutputBytes", f.max_output_bytes))
    for attr in ("requires_advanced_privileges", "disabled"):
        if getattr(f, attr) is not None:
            changes[attr] = bool(getattr(f, attr))
    return dataclasses.replace(spec, **changes)


def _clean_preload(modules: tuple[str, ...]) -> tuple[str, ...]:
    """Dotted module names, each part an identifier; duplicates dropped, first place kept."""
    cleaned: list[str] = []
    for raw in modules:
        module = raw.strip()
        if not all(part.isidentifier() and not keyword.iskeyword(part) for part in module.split(".")):
            raise InvalidRequest(
                f"Invalid value for 'preload': {raw!r} is not a Python module name "
                "(dotted identifiers, e.g. pandas or os.path)."
            )
        if module not in cleaned:
            cleaned.append(module)
    if len(cleaned) > MAX_PRELOAD:
        raise InvalidRequest(f"Invalid value for 'preload': {len(cleaned)} modules (at most {MAX_PRELOAD}).")
    return tuple(cleaned)


def _start_method(value: str) -> str:
    method = value.strip().lower()
    if method not in START_METHODS:
        raise InvalidRequest(
            f"Invalid value for 'startMethod': {value!r} (expected one of {', '.join(START_METHODS)})."
        )
    return method


def _apply_start(spec: RuntimeSpec, f: RuntimeFields) -> RuntimeSpec:
    """The preload and start method given; a change forgets the reported start status (the execution
    side builds its template again)."""
    changes: dict[str, Any] = {}
    if f.preload is not None:
        changes["preload"] = _clean_preload(f.preload)
    if f.start_method is not None:
        changes["start_method"] = _start_method(f.start_method)
    changed = dataclasses.replace(spec, **changes)
    if start_changed(spec, changed):
        changed = dataclasses.replace(changed, start_status=None)
    return changed


def start_changed(old: RuntimeSpec, new: RuntimeSpec) -> bool:
    """Whether kernels of ``new`` start differently from those of ``old``."""
    return (old.preload, old.start_method) != (new.preload, new.start_method)
