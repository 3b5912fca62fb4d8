"""The dispatch seams: how a committed SUBMITTED job reaches a worker, and what runs it there.

Two dispatchers: ``LocalDispatcher`` (threads in the server claim from the database) and
``celery.publisher.CeleryDispatcher`` (a message ``{job_id, attempt}`` to the runtime's queue;
`nbjobs worker` processes claim by id). Either way the claim is a compare-and-set in the database, so
a hint sent twice, late or never is harmless: the row is the record, the dispatcher only says "look".

What runs a claimed job is a ``JobRunner`` (``execution.supervisor.Supervisor``); dispatch only
decides when and where, never how.
"""

from __future__ import annotations

from typing import Protocol

from nbjobs.models.jobs import Job
from nbjobs.models.runtimes import RuntimeSpec


class Dispatcher(Protocol):
    def notify(self, job: Job) -> None:
        """A job was committed SUBMITTED (new or re-queued): get it to a worker. Never raises for a
        transport problem; the job stays recorded and is dispatched later."""

    def start(self) -> None:
        """Begin dispatching (the local dispatcher starts its worker threads)."""

    def drain(self, timeout: float) -> bool:
        """Take no new jobs and wait up to ``timeout`` seconds for the jobs this process runs; True
        when none still runs (at once for a dispatcher that runs nothing here)."""

    def stop(self, timeout: float | None = None) -> None:
        """Stop dispatching; wait up to ``timeout`` for the jobs this process runs."""


class JobRunner(Protocol):
    """Runs claimed jobs to their end, one per calling thread (the supervisor)."""

    def run(self, job: Job) -> Job | None:
        """Execute a claimed job; the ended job, or None if another writer fenced this attempt out."""

    def wake(self, job_id: str) -> None:
        """Something changed for a running job (a cancel, its end elsewhere): look at its row now."""

    def prepare(self, kernel_name: str, spec: RuntimeSpec | None = None) -> None:
        """Keep kernels of ``kernel_name`` warm for the jobs to come (started as runtime ``spec`` says)."""

    def start(self) -> None:
        """Keep the warm kernels filled in the background."""

    def fill(self) -> None:
        """Fill the warm kernels now, in the calling thread (burst mode)."""

    def close(self) -> None:
        """Stop the waiting runners and their kernels."""
