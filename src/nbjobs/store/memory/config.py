"""In-memory configuration store (tests); mirrors store/config.py."""

from __future__ import annotations

import threading
from typing import Any


class MemoryConfigStore:
    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()

    def load(self) -> dict[str, Any]:
        return dict(self._values)

    def replace(self, values: dict[str, Any], now: int) -> None:
        with self._lock:
            self._values = dict(values)
