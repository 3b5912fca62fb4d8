"""In-memory item store (tests); mirrors store/items.py."""

from __future__ import annotations

import builtins
import copy
import threading

from nbjobs.models.items import Item, Upload
from nbjobs.store.memory.shared import refuse_taken


class MemoryItemStore:
    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._data: dict[str, bytes] = {}
        self._pending: dict[str, tuple[str, int]] = {}
        self._uploads: dict[str, Upload] = {}
        self._parts: dict[str, dict[int, bytes]] = {}
        self._lock = threading.Lock()

    def add(self, item: Item, data: bytes) -> None:
        with self._lock:
            refuse_taken(item.item_id, self._items)
            self._items[item.item_id] = item
            self._data[item.item_id] = data

    def get(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    def get_data(self, item_id: str) -> bytes | None:
        return self._data.get(item_id)

    def save(self, item: Item, data: bytes | None = None) -> None:
        with self._lock:
            if item.item_id in self._items:
                self._items[item.item_id] = item
                if data is not None:
                    self._data[item.item_id] = data

    def delete(self, item_id: str) -> bool:
        with self._lock:
            self._pending = {j: p for j, p in self._pending.items() if p[0] != item_id}
            self._data.pop(item_id, None)
            return self._items.pop(item_id, None) is not None

    def list(self, owner: str | None = None) -> list[Item]:
        found = [i for i in self._items.values() if owner is None or i.owner == owner]
        return sorted(found, key=lambda i: (-i.created, i.item_id))

    def add_pending_update(self, job_id: str, item_id: str, now: int) -> None:
        with self._lock:
            refuse_taken(job_id, self._pending)
            self._pending[job_id] = (item_id, now)

    def pending_updates(self) -> builtins.list[tuple[str, str]]:
        return [(j, p[0]) for j, p in sorted(self._pending.items(), key=lambda kv: kv[1][1])]

    def drop_pending_update(self, job_id: str) -> None:
        self._pending.pop(job_id, None)

    def add_upload(self, upload: Upload) -> None:
        with self._lock:
            refuse_taken(upload.item_id, self._uploads)
            self._uploads[upload.item_id] = copy.deepcopy(upload)
            self._parts[upload.item_id] = {}

    def get_upload(self, item_id: str) -> Upload | None:
        return copy.deepcopy(self._uploads.get(item_id))  # SQL hands out a fresh properties dict

    def put_part(self, item_id: str, part_num: int, data: bytes) -> bool:
        with self._lock:
            if item_id not in self._uploads:
                return False
            self._parts[item_id][part_num] = data
            return True

    def part_sizes(self, item_id: str) -> dict[int, int]:
        return {n: len(d) for n, d in self._parts.get(item_id, {}).items()}

    def upload_data(self, item_id: str) -> bytes:
        parts = self._parts.get(item_id, {})
        return b"".join(parts[n] for n in sorted(parts))

    def finish_upload(self, item: Item, data: bytes) -> bool:
        with self._lock:
            if item.item_id not in self._uploads:
                return False
            refuse_taken(item.item_id, self._items)
            del self._uploads[item.item_id]
            self._parts.pop(item.item_id, None)
            self._items[item.item_id] = item
            self._data[item.item_id] = data
            return True

    def drop_upload(self, item_id: str) -> None:
        with self._lock:
            self._uploads.pop(item_id, None)
            self._parts.pop(item_id, None)

    def drop_uploads_before(self, created: int) -> int:
        with self._lock:
            old = [i for i, u in self._uploads.items() if u.created < created]
            for item_id in old:
                self._uploads.pop(item_id, None)
                self._parts.pop(item_id, None)
            return len(old)
