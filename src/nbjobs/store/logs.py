"""The ArcGIS logs resource in SQL: log messages (newest first) and the log settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, delete, func, insert, or_, select
from sqlalchemy.engine import Row

from nbjobs.models.logs import LogMessage, LogQuery
from nbjobs.store.tables import log_messages, log_settings

_FIELDS = (
    "time",
    "level",
    "source",
    "message",
    "machine",
    "process",
    "thread",
    "method_name",
    "job_id",
    "username",
    "runtime",
    "request_id",
)


class SqlLogStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, messages: Sequence[LogMessage]) -> None:
        if not messages:
            return
        rows = [{name: getattr(m.clipped(), name) for name in _FIELDS} for m in messages]
        with self.engine.begin() as conn:
            conn.execute(insert(log_messages), rows)

    def query(self, query: LogQuery) -> list[LogMessage]:
        t = log_messages
        stmt = select(t).where(t.c.level >= query.min_level)
        if query.newest is not None:
            stmt = stmt.where(t.c.time <= query.newest)
        if query.oldest is not None:
            stmt = stmt.where(t.c.time >= query.oldest)
        if query.sources:
            stmt = stmt.where(
                or_(
                    *(
                        or_(t.c.source == s, t.c.source.startswith(s + ".", autoescape=True))
                        for s in query.sources
                    )
                )
            )
        if query.job_id:
            stmt = stmt.where(t.c.job_id == query.job_id)
        if query.machines:
            stmt = stmt.where(t.c.machine.in_(query.machines))
        if query.processes:
            stmt = stmt.where(t.c.process.in_(query.processes))
        stmt = stmt.order_by(t.c.time.desc(), t.c.seq.desc()).limit(query.limit)
        with self.engine.connect() as conn:
            return [_message(r) for r in conn.execute(stmt)]

    def delete_before(self, before: int) -> int:
        with self.engine.begin() as conn:
            return conn.execute(delete(log_messages).where(log_messages.c.time < before)).rowcount

    def clear(self) -> int:
        with self.engine.begin() as conn:
            count = conn.execute(select(func.count()).select_from(log_messages)).scalar_one()
            conn.execute(delete(log_messages))
            return int(count)

    def load_settings(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return {r.name: r.value for r in conn.execute(select(log_settings))}

    def save_settings(self, values: dict[str, Any], now: int) -> None:
        if not values:
            return
        with self.engine.begin() as conn:  # a delete and an insert per name: the same on both dialects
            conn.execute(delete(log_settings).where(log_settings.c.name.in_(list(values))))
            conn.execute(
                insert(log_settings), [{"name": k, "value": v, "updated": now} for k, v in values.items()]
            )


def _message(row: Row[Any]) -> LogMessage:
    return LogMessage(**{name: getattr(row, name) for name in _FIELDS})
