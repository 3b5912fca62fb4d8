"""In-memory webhook receiver store (tests); mirrors store/webhooks.py."""

from __future__ import annotations

import threading

from nbjobs.models.automation import DELIVERIES_KEPT, Delivery, Receiver


class MemoryReceiverStore:
    def __init__(self) -> None:
        self._receivers: dict[str, Receiver] = {}
        self._deliveries: dict[str, list[Delivery]] = {}
        self._lock = threading.Lock()

    def add(self, receiver: Receiver) -> None:
        self._receivers[receiver.receiver_id] = receiver

    def get(self, receiver_id: str) -> Receiver | None:
        return self._receivers.get(receiver_id)

    def list(self) -> list[Receiver]:
        return sorted(self._receivers.values(), key=lambda r: (r.created, r.receiver_id))

    def save(self, receiver: Receiver) -> None:
        if receiver.receiver_id in self._receivers:
            self._receivers[receiver.receiver_id] = receiver

    def delete(self, receiver_id: str) -> bool:
        with self._lock:
            self._deliveries.pop(receiver_id, None)
            return self._receivers.pop(receiver_id, None) is not None

    def log(self, delivery: Delivery) -> None:
        with self._lock:
            log = self._deliveries.setdefault(delivery.receiver_id, [])
            log.append(delivery)
            log.sort(key=lambda d: (-d.received, d.delivery_id), reverse=False)
            del log[DELIVERIES_KEPT:]

    def deliveries(self, receiver_id: str, limit: int = 100) -> list[Delivery]:
        log = sorted(self._deliveries.get(receiver_id, []), key=lambda d: (d.received, d.delivery_id))
        return list(reversed(log))[:limit]
