"""The housekeeper: every background duty of a process as one steppable service.

A duty is a name, a period and a function: the lease reaper, the purge of old jobs and web tool calls,
the scheduler's tick, the outbox reconcile (broker mode), the write-back of executed notebooks to
their items, a worker's heartbeat. The server and the worker each build the list they need in their
composition root (``nbjobs.roots``) and run it with ``start``; tests step it with ``tick(now)``.
One duty that fails is logged and retried at its next period; it never stops the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from nbjobs.clock import Clock
from nbjobs.errors import StoreUnavailable

log = logging.getLogger(__name__)


@dataclass
class Duty:
    """One background duty: ``run`` is called every ``every_seconds`` (at the first tick at once)."""

    name: str
    every_seconds: float
    run: Callable[[], object]
    next_at: int = 0  # epoch ms of the next run; 0: due now


class Housekeeper:
    """Runs due duties on ``tick``; ``start`` ticks from a background thread until ``stop``."""

    def __init__(self, clock: Clock, duties: list[Duty], *, name: str = "nbjobs-housekeeper") -> None:
        if any(d.every_seconds <= 0 for d in duties):
            raise ValueError("every duty needs a positive period")
        self.clock = clock
        self.duties = duties
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: int | None = None) -> list[str]:
        """Run every duty due at ``now`` (default: the clock), in order; the names of those run."""
        now = self.clock() if now is None else now
        ran = []
        for duty in self.duties:
            if duty.next_at > now:
                continue
            duty.next_at = now + int(duty.every_seconds * 1000)
            ran.append(duty.name)
            try:
                duty.run()
            except StoreUnavailable as exc:  # an outage: one line each round, not a traceback
                log.warning("housekeeping duty %r: %s (%s); will retry", duty.name, exc, exc.__cause__ or exc)
            except Exception:
                log.exception("housekeeping duty %r failed; will retry", duty.name)
        return ran

    def run_now(self, name: str) -> None:
        """Run one duty now, whatever its schedule (a test, or an operator's request)."""
        for duty in self.duties:
            if duty.name == name:
                duty.run()
                return
        raise KeyError(name)

    def start(self) -> None:
        """Tick in a background thread, waking at the shortest period, until ``stop``."""
        if self._thread is not None or not self.duties:
            return
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        interval = min(d.every_seconds for d in self.duties)
        while not self._stop.wait(interval):
            self.tick()
