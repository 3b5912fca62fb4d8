"""In-memory webhook receiver store (tests); mirrors store/webhooks.py.

Receivers are copied in and out, as rows are, so no caller shares a ``parameters`` dict with the store.
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
import threading

from nbjobs.models.automation import DELIVERIES_KEPT, Delivery, Receiver
from nbjobs.store.memory.shared import refuse_taken

SOURCE_CHARS = 255  # what webhook_deliveries.source holds: SqlReceiverStore.log cuts it to that


def _newest_first(d: Delivery) -> tuple[int, str]:
    """The order of ``deliveries`` and of what ``log`` keeps: by received time, then id, both descending."""
    return (d.received, d.delivery_id)


class MemoryReceiverStore:
    def __init__(self) -> None:
        self._receivers: dict[str, Receiver] = {}
        self._deliveries: dict[str, list[Delivery]] = {}
        self._lock = threading.Lock()

    def add(self, receiver: Receiver) -> None:
        with self._lock:
            refuse_taken(receiver.receiver_id, self._receivers)
            self._receivers[receiver.receiver_id] = copy.deepcopy(receiver)

    def get(self, receiver_id: str) -> Receiver | None:
        return copy.deepcopy(self._receivers.get(receiver_id))

    def list(self) -> list[Receiver]:
        return copy.deepcopy(sorted(self._receivers.values(), key=lambda r: (r.created, r.receiver_id)))

    def save(self, receiver: Receiver) -> None:
        with self._lock:
            if receiver.receiver_id in self._receivers:
                self._receivers[receiver.receiver_id] = copy.deepcopy(receiver)

    def delete(self, receiver_id: str) -> bool:
        with self._lock:
            self._deliveries.pop(receiver_id, None)
            return self._receivers.pop(receiver_id, None) is not None

    def log(self, delivery: Delivery) -> None:
        with self._lock:
            refuse_taken(
                delivery.delivery_id, (d.delivery_id for kept in self._deliveries.values() for d in kept)
            )
            log = self._deliveries.setdefault(delivery.receiver_id, [])
            log.append(dataclasses.replace(delivery, source=delivery.source[:SOURCE_CHARS]))
            log.sort(key=_newest_first, reverse=True)
            del log[DELIVERIES_KEPT:]

    def deliveries(self, receiver_id: str, limit: int = 100) -> builtins.list[Delivery]:
        return sorted(self._deliveries.get(receiver_id, []), key=_newest_first, reverse=True)[:limit]
