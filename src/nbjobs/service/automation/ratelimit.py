"""A token bucket per key, on the injected clock: bursts up to ``per_minute``, refilled evenly."""

from __future__ import annotations

import threading

from nbjobs.clock import Clock

MINUTE_MS = 60_000


class RateLimiter:
    """Per-process: each server process keeps its own buckets (so a cluster of N allows up to N times
    the rate); enough to stop a runaway sender from flooding the job queue."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[str, tuple[float, int]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False when its bucket is empty. A limit of 0 allows everything."""
        if self.per_minute <= 0:
            return True
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - at) * self.per_minute / MINUTE_MS)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            return True

    def forget(self, key: str) -> None:
        with self._lock:
            self._buckets.pop(key, None)
