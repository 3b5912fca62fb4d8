"""Notification rules and the delivery outbox: frozen records and wire enums.

A rule says which job events go to which channel (``email`` to addresses, ``webhook`` POSTed to a URL
and signed with a per-rule secret). Rules hang on a job (given at submit, or copied from the task or web
tool that started it); a *watch* is a job's rules plus the events already enqueued for it. A delivery is
one (job, rule, event) in the outbox, unique on that triple, with its attempts in a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

ATTEMPT_DETAIL_CHARS = 1000  # what an attempt's detail keeps (an error message, a status line)


class NotifyEvent(StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # every FAILED end (a timeout too, unless the rule also asks for timedOut)
    TIMED_OUT = "timedOut"  # FAILED with failure.reason == "timeout"
    CANCELLED = "cancelled"
    RUNNING_LONGER = "runningLonger"  # still running ``afterMinutes`` after it started
    ATTEMPT_FAILED = "attemptFailed"  # one attempt failed and the job's retry policy runs it again

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_EVENTS


TERMINAL_EVENTS = frozenset(
    {NotifyEvent.SUCCEEDED, NotifyEvent.FAILED, NotifyEvent.TIMED_OUT, NotifyEvent.CANCELLED}
)


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or its first)
    SENT = "sent"
    GAVE_UP = "gave_up"  # no attempt succeeded within the retry window, or it can never succeed


@dataclass(frozen=True)
class Rule:
    """One notification rule. ``target``: comma-separated addresses (email) or a URL (webhook)."""

    rule_id: str
    events: tuple[NotifyEvent, ...]
    channel: Channel
    target: str
    secret: str = ""  # webhook: the HMAC-SHA256 key
    attach_notebook: bool = False  # email: the executed notebook as an HTML attachment
    after_minutes: int = 0  # runningLonger: minutes after the start

    def to_wire(self, *, reveal_secret: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.rule_id, "events": [str(e) for e in self.events]}
        if self.channel == Channel.EMAIL:
            out["email"] = self.target
            out["attachNotebook"] = self.attach_notebook
        else:
            out["url"] = self.target
            out["secret"] = self.secret if reveal_secret else "********"
        if self.after_minutes:
            out["afterMinutes"] = self.after_minutes
        return out

    def to_store(self) -> dict[str, Any]:
        return {
            "id": self.rule_id,
            "events": [str(e) for e in self.events],
            "channel": str(self.channel),
            "target": self.target,
            "secret": self.secret,
            "attachNotebook": self.attach_notebook,
            "afterMinutes": self.after_minutes,
        }

    @classmethod
    def from_store(cls, data: dict[str, Any]) -> Rule:
        return cls(
            rule_id=data["id"],
            events=tuple(NotifyEvent(e) for e in data["events"]),
            channel=Channel(data["channel"]),
            target=data["target"],
            secret=data.get("secret", ""),
            attach_notebook=bool(data.get("attachNotebook", False)),
            after_minutes=int(data.get("afterMinutes", 0)),
        )


@dataclass(frozen=True)
class Watch:
    """A job with rules, and the ``rule_id:event`` keys already enqueued for it.

    ``seen`` is the job's ``status:revision`` at the last scan; ``job_status`` / ``job_revision`` /
    ``job_start`` are the job's now, as the store read them with the watch (``job_status`` None: the store
    cannot tell, "" : no such job), so a scan reads a job again only when it changed."""

    job_id: str
    username: str
    rules: tuple[Rule, ...]
    created: int
    fired: frozenset[str] = frozenset()
    done: bool = False
    seen: str = ""
    job_status: str | None = None
    job_revision: int = 0
    job_start: int = 0

    @property
    def job_state(self) -> str:
        return f"{self.job_status}:{self.job_revision}"


def idempotency_key(job_id: str, rule_id: str, event: NotifyEvent, attempt: int = 0) -> str:
    """``<job>:<rule>:<event>``, and ``:<attempt>`` for an event about one attempt (attemptFailed)."""
    key = f"{job_id}:{rule_id}:{event}"
    return f"{key}:{attempt}" if attempt else key


@dataclass(frozen=True)
class Delivery:
    """One (job, rule, event) in the outbox. ``payload`` is frozen when it is enqueued, so every attempt
    sends the same body (and a receiver can de-duplicate on ``idempotency_key``)."""

    delivery_id: str
    job_id: str
    username: str
    rule: Rule
    event: NotifyEvent
    created: int  # first due; attempts stop ``retry window`` after it
    next_attempt_at: int
    payload: dict[str, Any] = field(default_factory=dict)
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_error: str = ""
    updated: int = 0
    attempt: int = 0  # the job attempt an attemptFailed delivery is about; 0 for the job's events

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.job_id, self.rule.rule_id, self.event, self.attempt)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.delivery_id,
            "jobId": self.job_id,
            "ruleId": self.rule.rule_id,
            "channel": str(self.rule.channel),
            "target": self.rule.target,
            "event": str(self.event),
            "status": str(self.status),
            "attempts": self.attempts,
            "created": self.created,
            "nextAttemptAt": self.next_attempt_at if self.status == DeliveryStatus.PENDING else None,
            "lastError": self.last_error,
            "idempotencyKey": self.idempotency_key,
        }


@dataclass(frozen=True)
class Attempt:
    """One try at sending a delivery: when, how long, and what came of it."""

    delivery_id: str
    number: int
    at: int
    duration_ms: int
    ok: bool
    detail: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "at": self.at,
            "durationMs": self.duration_ms,
            "ok": self.ok,
            "detail": self.detail,
        }
