"""The live-workers registry: one row per `nbjobs worker` process, renewed by its heartbeat."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from nbjobs.models.workers import WorkerRecord
from nbjobs.store.tables import workers


class SqlWorkerStore:
    """Register, renew and list workers. Each method is one short transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def register(self, worker: WorkerRecord) -> None:
        row = _to_row(worker)
        with self.engine.begin() as conn:
            stmt = update(workers).where(workers.c.worker_id == worker.worker_id).values(**row)
            if not conn.execute(stmt).rowcount:
                conn.execute(insert(workers).values(**row))

    def beat(self, worker_id: str, now: int, state: str | None = None) -> bool:
        """Renew a worker's heartbeat (and state); False if its row is gone (it was pruned)."""
        values: dict[str, Any] = {"last_heartbeat": now}
        if state is not None:
            values["state"] = state
        with self.engine.begin() as conn:
            stmt = update(workers).where(workers.c.worker_id == worker_id).values(**values)
            return conn.execute(stmt).rowcount == 1

    def remove(self, worker_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(workers).where(workers.c.worker_id == worker_id))

    def live(self, since: int) -> list[WorkerRecord]:
        """Workers whose last heartbeat is at or after ``since``, by host and start time."""
        stmt = (
            select(workers)
            .where(workers.c.last_heartbeat >= since)
            .order_by(workers.c.hostname, workers.c.started)
        )
        with self.engine.connect() as conn:
            return [_from_row(r) for r in conn.execute(stmt)]

    def prune(self, before: int) -> int:
        """Forget workers silent since before ``before``; returns how many."""
        with self.engine.begin() as conn:
            return conn.execute(delete(workers).where(workers.c.last_heartbeat < before)).rowcount


def _to_row(w: WorkerRecord) -> dict[str, Any]:
    return {
        "worker_id": w.worker_id,
        "hostname": w.hostname,
        "pid": w.pid,
        "runtimes": list(w.runtimes),
        "queues": list(w.queues),
        "concurrency": w.concurrency,
        "state": w.state,
        "version": w.version,
        "started": w.started,
        "last_heartbeat": w.last_heartbeat,
    }


def _from_row(row: Any) -> WorkerRecord:
    m = row._mapping
    return WorkerRecord(
        worker_id=m["worker_id"],
        hostname=m["hostname"],
        pid=m["pid"],
        runtimes=tuple(m["runtimes"] or ()),
        queues=tuple(m["queues"] or ()),
        concurrency=m["concurrency"],
        state=m["state"],
        version=m["version"],
        started=m["started"],
        last_heartbeat=m["last_heartbeat"],
    )
