"""The outbox reconciler: publish again what the broker never got or lost.

A job is published after its row is committed; if that publish failed, or the broker lost the
message (a Redis restart without persistence, a worker that took the message and died before its
claim), the job would wait forever. Each housekeeping round sends a new message for

- every SUBMITTED job never published (older than a few seconds, so the submitter's own publish
  wins the race), and
- SUBMITTED jobs last published more than ``redispatch_seconds`` ago, when their queue holds fewer
  messages than the runtime has waiting jobs (so a long but healthy queue is not flooded).

A duplicate is harmless: the claim is a compare-and-set, the second message finds nothing to claim.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Protocol

from nbjobs.clock import Clock
from nbjobs.dispatch.celery.publisher import queue_name
from nbjobs.models.jobs import Waiting
from nbjobs.models.stores import Outbox

log = logging.getLogger(__name__)

FIRST_PUBLISH_GRACE_MS = 5_000


class Publisher(Protocol):
    """What the reconciler needs of the broker side (``CeleryDispatcher``, or a test's fake)."""

    def publish(self, waiting: list[Waiting]) -> int:
        """Send one message per job; how many the broker took."""

    def depth(self, queue: str) -> int | None:
        """Messages waiting in ``queue``; None when the broker cannot tell."""


class Reconciler:
    """Re-publishes SUBMITTED jobs nobody claimed; ``tick`` is one round (steppable in tests)."""

    def __init__(
        self, outbox: Outbox, dispatcher: Publisher, clock: Clock, redispatch_seconds: float
    ) -> None:
        self.outbox = outbox
        self.dispatcher = dispatcher
        self.clock = clock
        self.redispatch_ms = int(redispatch_seconds * 1000)

    def tick(self) -> int:
        """One round; returns how many jobs were published again."""
        now = self.clock()
        due = self.outbox.due(
            created_before=now - min(FIRST_PUBLISH_GRACE_MS, self.redispatch_ms),
            dispatched_before=now - self.redispatch_ms,
            now=now,
        )
        if not due:
            return 0
        resend = [w for w in due if not w.dispatched_at]
        stale: dict[str, list[Waiting]] = defaultdict(list)
        for w in due:
            if w.dispatched_at:
                stale[w.runtime_id].append(w)
        if stale:
            waiting = self.outbox.waiting_counts()
            for runtime_id, jobs in stale.items():
                depth = self.dispatcher.depth(queue_name(runtime_id))
                missing = len(jobs) if depth is None else waiting.get(runtime_id, 0) - depth
                resend.extend(jobs[: max(missing, 0)])
        sent = self.dispatcher.publish(resend) if resend else 0
        if sent:
            log.warning("re-published %d job(s) that no worker had claimed", sent)
        return sent
