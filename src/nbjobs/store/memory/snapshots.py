"""In-memory snapshot store (tests); mirrors store/snapshots.py, including its foreign key: a snapshot
needs its item in the item store beside it, and goes when that item does."""

from __future__ import annotations

import builtins
import itertools
import threading
from collections.abc import Sequence

from nbjobs.models.items import Snapshot
from nbjobs.store.memory.items import MemoryItemStore
from nbjobs.store.memory.shared import refuse_taken


class MemorySnapshotStore:
    def __init__(self, items: MemoryItemStore) -> None:
        self._items = items
        self._rows: dict[str, tuple[int, Snapshot, bytes]] = {}  # resource key -> (seq, snapshot, data)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def _live(self, item_id: str) -> builtins.list[tuple[int, Snapshot, bytes]]:
        """The item's rows; those of a deleted item are dropped (the SQL cascade)."""
        if self._items.get(item_id) is None:
            for key in [k for k, row in self._rows.items() if row[1].item_id == item_id]:
                del self._rows[key]
            return []
        return [row for row in self._rows.values() if row[1].item_id == item_id]

    def add(self, snapshot: Snapshot, data: bytes) -> None:
        with self._lock:
            refuse_taken(snapshot.resource_key, self._rows)
            if self._items.get(snapshot.item_id) is None:
                raise ValueError(f"no item {snapshot.item_id!r}")  # the SQL foreign key
            self._rows[snapshot.resource_key] = (next(self._seq), snapshot, data)

    def _row(self, item_id: str, resource_key: str) -> tuple[int, Snapshot, bytes] | None:
        with self._lock:
            return next((r for r in self._live(item_id) if r[1].resource_key == resource_key), None)

    def get(self, item_id: str, resource_key: str) -> Snapshot | None:
        row = self._row(item_id, resource_key)
        return row[1] if row else None

    def get_data(self, item_id: str, resource_key: str) -> bytes | None:
        row = self._row(item_id, resource_key)
        return row[2] if row else None

    def list(self, item_id: str) -> builtins.list[Snapshot]:
        with self._lock:
            rows = sorted(self._live(item_id), key=lambda r: (-r[1].created, -r[0]))
        return [r[1] for r in rows]

    def delete(self, item_id: str, resource_keys: Sequence[str]) -> int:
        with self._lock:
            gone = {r[1].resource_key for r in self._live(item_id)} & set(resource_keys)
            for key in gone:
                del self._rows[key]
            return len(gone)
