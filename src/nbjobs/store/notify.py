"""Cancel notifications across machines: PostgreSQL LISTEN/NOTIFY, with the row poll as the fallback.

The API server that accepts a cancel sends ``NOTIFY nbjobs_cancel, '<job id>'`` after the commit; every
worker listens and wakes the supervisor of that job, which then reads the row at once instead of at its
next poll. A lost notification (listener reconnecting, SQLite) only costs the poll interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)

CHANNEL = "nbjobs_cancel"


def notify_cancel(engine: Engine, job_id: str) -> None:
    """Tell every listening worker that ``job_id`` was cancelled (PostgreSQL only; a no-op elsewhere)."""
    if engine.dialect.name != "postgresql":
        return
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_notify(:channel, :job_id)"), {"channel": CHANNEL, "job_id": job_id})
    except Exception as exc:  # the cancel itself is committed; the worker's poll still sees it
        log.warning("could not notify the cancel of %s: %s", job_id, exc)


class CancelListener(threading.Thread):
    """LISTENs on the cancel channel and calls ``on_cancel(job_id)``; reconnects until stopped."""

    def __init__(self, engine: Engine, on_cancel: Callable[[str], None]) -> None:
        super().__init__(name="nbjobs-cancel-listener", daemon=True)
        self.url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.on_cancel = on_cancel
        self.stopping = threading.Event()
        self.listening = threading.Event()

    def run(self) -> None:
        import psycopg

        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.on_cancel(note.payload)
            except Exception as exc:
                self.listening.clear()
                log.warning("cancel listener lost its connection (%s); reconnecting", exc)
                self.stopping.wait(2.0)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
