"""Stored overrides of the server configuration: the one table every server of a cluster shares."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, delete, insert, select

from nbjobs.store.tables import server_config


class SqlConfigStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return {r.name: r.value for r in conn.execute(select(server_config))}

    def replace(self, values: dict[str, Any], now: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(server_config))
            if values:
                conn.execute(
                    insert(server_config),
                    [{"name": k, "value": v, "updated": now} for k, v in values.items()],
                )
