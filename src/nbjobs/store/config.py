"""Stored overrides of the server configuration: the one table every server of a cluster shares."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from sqlalchemy import Engine, delete, insert, select

from nbjobs.store.tables import server_config


class ConfigStore(Protocol):
    def load(self) -> dict[str, Any]:
        """Every stored override, by ArcGIS property name."""

    def replace(self, values: dict[str, Any], now: int) -> None:
        """Make ``values`` the complete set of overrides, in one transaction."""


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


class MemoryConfigStore:
    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()

    def load(self) -> dict[str, Any]:
        return dict(self._values)

    def replace(self, values: dict[str, Any], now: int) -> None:
        with self._lock:
            self._values = dict(values)
