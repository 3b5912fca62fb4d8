"""In-memory log store (tests); mirrors store/logs.py."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

from nbjobs.models.logs import LogMessage, LogQuery


class MemoryLogStore:
    def __init__(self) -> None:
        self._messages: list[tuple[int, LogMessage]] = []  # (seq, message) in the order kept
        self._settings: dict[str, Any] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def add(self, messages: Sequence[LogMessage]) -> None:
        with self._lock:
            for m in messages:
                self._seq += 1
                self._messages.append((self._seq, m.clipped()))

    def query(self, query: LogQuery) -> list[LogMessage]:
        with self._lock:
            found = [(seq, m) for seq, m in self._messages if query.matches(m)]
        found.sort(key=lambda pair: (pair[1].time, pair[0]), reverse=True)
        return [m for _, m in found[: query.limit]]

    def delete_before(self, before: int) -> int:
        with self._lock:
            kept = [(seq, m) for seq, m in self._messages if m.time >= before]
            gone = len(self._messages) - len(kept)
            self._messages = kept
            return gone

    def clear(self) -> int:
        with self._lock:
            gone = len(self._messages)
            self._messages = []
            return gone

    def load_settings(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._settings)

    def save_settings(self, values: dict[str, Any], now: int) -> None:
        with self._lock:
            self._settings.update(copy.deepcopy(values))
