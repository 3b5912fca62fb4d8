"""In-memory configuration store (tests); mirrors store/config.py.

Values are copied in and out, as JSON columns are, so no caller shares a nested list or dict with it.
"""

from __future__ import annotations

import copy
import threading
from typing import Any


class MemoryConfigStore:
    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()

    def load(self) -> dict[str, Any]:
        return copy.deepcopy(self._values)

    def replace(self, values: dict[str, Any], now: int) -> None:
        with self._lock:
            self._values = copy.deepcopy(values)
