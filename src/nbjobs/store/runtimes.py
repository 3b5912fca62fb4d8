"""Registered runtimes: the store protocol and its SQL implementation (all runtime SQL is here)."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nbjobs.errors import InvalidRequest
from nbjobs.models.runtimes import RuntimeSpec
from nbjobs.store.tables import runtimes

_FIELDS = tuple(f.name for f in dataclasses.fields(RuntimeSpec))


def name_taken(name: str) -> InvalidRequest:
    return InvalidRequest(f"A runtime named '{name}' already exists.")


def sort_key(spec: RuntimeSpec) -> tuple[bool, int, str]:
    return (not spec.is_default, spec.created, spec.name.lower())


def _from_row(row: Any) -> RuntimeSpec:
    m = row._mapping
    values = {name: m[name] for name in _FIELDS}
    for flag in ("requires_advanced_privileges", "disabled", "is_default"):
        values[flag] = bool(values[flag])
    return RuntimeSpec(**values)


class SqlRuntimeStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, spec: RuntimeSpec) -> None:
        if self.get_by_name(spec.name) is not None:
            raise name_taken(spec.name)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(runtimes).values(**dataclasses.asdict(spec)))
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
        row = dataclasses.asdict(spec)
        del row["runtime_id"]
        try:
            with self.engine.begin() as conn:
                conn.execute(update(runtimes).where(runtimes.c.runtime_id == spec.runtime_id).values(**row))
        except IntegrityError as exc:
            raise name_taken(spec.name) from exc

    def delete(self, runtime_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(runtimes).where(runtimes.c.runtime_id == runtime_id)).rowcount == 1
