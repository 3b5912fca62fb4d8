"""The dispatch seam: how a committed SUBMITTED job reaches a worker.

Two implementations: ``LocalPool`` (threads in the server claim from the database) and
``CeleryDispatcher`` (a message ``{job_id, attempt}`` to the runtime's queue; `nbjobs worker`
processes claim by id). Either way the claim is a compare-and-set in the database, so a hint sent
twice, late or never is harmless: the row is the record, the dispatcher only says "look".
"""

from __future__ import annotations

from typing import Protocol

from nbjobs.models.jobs import Job


class Dispatcher(Protocol):
    def notify(self, job: Job) -> None:
        """A job was committed SUBMITTED (new or re-queued): get it to a worker. Never raises for a
        transport problem; the job stays recorded and is dispatched later."""

    def start(self) -> None:
        """Begin dispatching (the local pool starts its worker threads)."""

    def stop(self, timeout: float | None = None) -> None:
        """Stop dispatching; the local pool waits up to ``timeout`` for running jobs."""
