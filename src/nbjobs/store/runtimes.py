"""Registered runtimes: the store protocol and its SQL implementation (all runtime SQL is here)."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nbjobs.errors import InvalidRequest
from nbjobs.models.runtimes import RuntimeSpec, StartStatus
from nbjobs.store.tables import runtimes

_FIELDS = tuple(f.name for f in dataclasses.fields(RuntimeSpec))
# Written by record_start_status only: save() keeps what the execution side last reported.
_REPORTED = ("start_status",)


def name_taken(name: str) -> InvalidRequest:
    return InvalidRequest(f"A runtime named '{name}' already exists.")


def sort_key(spec: RuntimeSpec) -> tuple[bool, int, str]:
    return (not spec.is_default, spec.created, spec.name.lower())


def status_to_json(status: StartStatus | None) -> dict[str, Any] | None:
    return None if status is None else dataclasses.asdict(status)


def status_from_json(value: Any) -> StartStatus | None:
    if not isinstance(value, dict) or not value.get("state"):
        return None
    return StartStatus(str(value["state"]), str(value.get("reason") or ""), int(value.get("updated") or 0))


def _to_row(spec: RuntimeSpec) -> dict[str, Any]:
    row = {name: getattr(spec, name) for name in _FIELDS}
    row["preload"] = list(spec.preload)
    row["start_status"] = status_to_json(spec.start_status)
    return row


def _from_row(row: Any) -> RuntimeSpec:
    m = row._mapping
    values = {name: m[name] for name in _FIELDS}
    for flag in ("requires_advanced_privileges", "disabled", "is_default"):
        values[flag] = bool(values[flag])
    values["preload"] = tuple(values["preload"] or ())
    values["start_status"] = status_from_json(values["start_status"])
    return RuntimeSpec(**values)


class SqlRuntimeStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, spec: RuntimeSpec) -> None:
        if self.get_by_name(spec.name) is not None:
            raise name_taken(spec.name)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(runtimes).values(**_to_row(spec)))
        except IntegrityError as exc:  # a concurrent add of the same name or id
            raise name_taken(spec.name) from exc

    def get(self, runtime_id: str) -> RuntimeSpec | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(runtimes).where(runtimes.c.runtime_id == runtime_id)).first()
        return _from_row(row) if row else None

    def get_by_name(self, name: str) -> RuntimeSpec | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(runtimes).where(func.lower(runtimes.c.name) == name.lower())).first()
        return _from_row(row) if row else None

    def list(self) -> list[RuntimeSpec]:
        with self.engine.connect() as conn:
            return sorted((_from_row(r) for r in conn.execute(select(runtimes))), key=sort_key)

    def save(self, spec: RuntimeSpec) -> None:
        other = self.get_by_name(spec.name)
        if other is not None and other.runtime_id != spec.runtime_id:
            raise name_taken(spec.name)
        row = _to_row(spec)
        for name in ("runtime_id", *_REPORTED):
            del row[name]
        try:
            with self.engine.begin() as conn:
                conn.execute(update(runtimes).where(runtimes.c.runtime_id == spec.runtime_id).values(**row))
        except IntegrityError as exc:
            raise name_taken(spec.name) from exc

    def delete(self, runtime_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(runtimes).where(runtimes.c.runtime_id == runtime_id)).rowcount == 1

    def record_start_status(self, runtime_id: str, status: StartStatus | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(runtimes)
                .where(runtimes.c.runtime_id == runtime_id)
                .values(start_status=status_to_json(status))
            )
