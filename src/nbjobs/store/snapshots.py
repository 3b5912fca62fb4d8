"""Item snapshots (kept versions of a notebook item): the SQL implementation of ``SnapshotStore``."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, delete, insert, select

from nbjobs.models.items import Snapshot
from nbjobs.store.tables import item_snapshots

_META = [c for c in item_snapshots.c if c.name not in ("data", "seq")]


def _from_row(row: Any) -> Snapshot:
    m = row._mapping
    return Snapshot(
        resource_key=m["resource_key"],
        item_id=m["item_id"],
        name=m["name"],
        created=m["created"],
        size=m["size"],
        description=m["description"],
        automatic=bool(m["automatic"]),
        source=m["source"],
        private_access=bool(m["private_access"]),
        runtime_name=m["runtime_name"],
        runtime_version=m["runtime_version"],
    )


def _key(item_id: str, resource_key: str) -> Any:
    return (item_snapshots.c.item_id == item_id) & (item_snapshots.c.resource_key == resource_key)


class SqlSnapshotStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, snapshot: Snapshot, data: bytes) -> None:
        row = {
            "resource_key": snapshot.resource_key,
            "item_id": snapshot.item_id,
            "name": snapshot.name,
            "description": snapshot.description,
            "created": snapshot.created,
            "size": snapshot.size,
            "automatic": snapshot.automatic,
            "source": snapshot.source,
            "private_access": snapshot.private_access,
            "runtime_name": snapshot.runtime_name,
            "runtime_version": snapshot.runtime_version,
            "data": data,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(item_snapshots).values(**row))

    def get(self, item_id: str, resource_key: str) -> Snapshot | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_META).where(_key(item_id, resource_key))).first()
        return _from_row(row) if row else None

    def get_data(self, item_id: str, resource_key: str) -> bytes | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(item_snapshots.c.data).where(_key(item_id, resource_key))).first()
        return bytes(row[0]) if row else None

    def list(self, item_id: str) -> builtins.list[Snapshot]:
        stmt = (
            select(*_META)
            .where(item_snapshots.c.item_id == item_id)
            .order_by(item_snapshots.c.created.desc(), item_snapshots.c.seq.desc())
        )
        with self.engine.connect() as conn:
            return [_from_row(r) for r in conn.execute(stmt)]

    def delete(self, item_id: str, resource_keys: Sequence[str]) -> int:
        if not resource_keys:
            return 0
        stmt = delete(item_snapshots).where(
            (item_snapshots.c.item_id == item_id) & item_snapshots.c.resource_key.in_(list(resource_keys))
        )
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount)
