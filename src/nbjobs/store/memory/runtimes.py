"""An in-memory runtime store: the fake unit tests use in place of the SQL one."""

from __future__ import annotations

import dataclasses
import threading

from nbjobs.models.runtimes import RuntimeSpec, StartStatus
from nbjobs.store.runtimes import name_taken, sort_key


class MemoryRuntimeStore:
    def __init__(self) -> None:
        self._runtimes: dict[str, RuntimeSpec] = {}
        self._lock = threading.Lock()

    def add(self, spec: RuntimeSpec) -> None:
        with self._lock:
            if spec.runtime_id in self._runtimes or self._named(spec.name) is not None:
                raise name_taken(spec.name)
            self._runtimes[spec.runtime_id] = spec

    def get(self, runtime_id: str) -> RuntimeSpec | None:
        return self._runtimes.get(runtime_id)

    def get_by_name(self, name: str) -> RuntimeSpec | None:
        return self._named(name)

    def list(self) -> list[RuntimeSpec]:
        return sorted(self._runtimes.values(), key=sort_key)

    def save(self, spec: RuntimeSpec) -> None:
        with self._lock:
            other = self._named(spec.name)
            if other is not None and other.runtime_id != spec.runtime_id:
                raise name_taken(spec.name)
            old = self._runtimes.get(spec.runtime_id)
            if old is not None:  # what the execution side reported stays (record_start_status owns it)
                self._runtimes[spec.runtime_id] = dataclasses.replace(spec, start_status=old.start_status)

    def delete(self, runtime_id: str) -> bool:
        with self._lock:
            return self._runtimes.pop(runtime_id, None) is not None

    def record_start_status(self, runtime_id: str, status: StartStatus | None) -> None:
        with self._lock:
            old = self._runtimes.get(runtime_id)
            if old is not None:
                self._runtimes[runtime_id] = dataclasses.replace(old, start_status=status)

    def _named(self, name: str) -> RuntimeSpec | None:
        return next((r for r in self._runtimes.values() if r.name.lower() == name.lower()), None)
