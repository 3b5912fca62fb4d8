"""In-memory worker registry (tests); mirrors store/workers.py."""

from __future__ import annotations

import builtins
import dataclasses
import threading

from nbjobs.models.workers import WorkerRecord


class MemoryWorkerStore:
    def __init__(self) -> None:
        self._workers: dict[str, WorkerRecord] = {}
        self._lock = threading.Lock()

    def register(self, worker: WorkerRecord) -> None:
        with self._lock:
            self._workers[worker.worker_id] = worker

    def beat(self, worker_id: str, now: int, state: str | None = None) -> bool:
        with self._lock:
            found = self._workers.get(worker_id)
            if found is None:
                return False
            self._workers[worker_id] = dataclasses.replace(
                found, last_heartbeat=now, state=found.state if state is None else state
            )
            return True

    def remove(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def live(self, since: int) -> builtins.list[WorkerRecord]:
        with self._lock:
            found = [w for w in self._workers.values() if w.last_heartbeat >= since]
        return sorted(found, key=lambda w: (w.hostname, w.started))

    def prune(self, before: int) -> int:
        with self._lock:
            gone = [k for k, w in self._workers.items() if w.last_heartbeat < before]
            for key in gone:
                del self._workers[key]
            return len(gone)
