"""What is due and what is sent: the events a rule asks for that a job has reached, the payload of
one delivery, and the retry policy of deliveries. Pure decisions over records; no I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from nbjobs.models.jobs import RUNNING, FailureReason, Job, JobStatus
from nbjobs.models.notifications import (
    NotifyEvent,
    Rule,
    Watch,
    idempotency_key,
)
from nbjobs.service.notifications import mail
from nbjobs.settings import NotificationSettings

MINUTE_MS = 60_000


@dataclass(frozen=True)
class NotifyPolicy:
    """How the sender behaves (from settings; tests make it fast)."""

    timeout_seconds: float = 10.0  # per attempt: connect, read, SMTP commands
    retry_base_seconds: float = 10.0  # the first retry waits up to this long (full jitter)
    retry_max_seconds: float = 3600.0  # no wait between attempts is longer
    retry_window_seconds: float = 24 * 3600.0  # no attempt later than this after the delivery was enqueued
    senders: int = 4  # threads sending at once
    verify_tls: bool = True

    @classmethod
    def from_settings(cls, notify: NotificationSettings) -> NotifyPolicy:
        return cls(
            timeout_seconds=notify.notify_timeout_seconds,
            retry_base_seconds=notify.notify_retry_base_seconds,
            retry_max_seconds=notify.notify_retry_max_seconds,
            retry_window_seconds=notify.notify_retry_window_hours * 3600,
            senders=notify.notify_senders,
        )

    @property
    def lease_ms(self) -> int:
        """How long a claimed attempt is someone's: past it (the sender died) another may take it."""
        return int(max(10.0, 6 * self.timeout_seconds) * 1000)

    def backoff_ms(self, attempt: int, rng: random.Random) -> int:
        """Full jitter: uniform in [0, min(max, base * 2 ** (attempt - 1))]."""
        ceiling = min(self.retry_max_seconds, self.retry_base_seconds * 2 ** max(attempt - 1, 0))
        return int(rng.uniform(0, ceiling) * 1000)


def event_for_end(job: Job, rule: Rule) -> NotifyEvent | None:
    """The one terminal event of an ended job this rule asks for, or None."""
    if job.status == JobStatus.COMPLETED:
        wanted = NotifyEvent.SUCCEEDED
    elif job.status == JobStatus.CANCELLED:
        wanted = NotifyEvent.CANCELLED
    elif (
        job.failure is not None
        and job.failure.reason == FailureReason.TIMEOUT
        and (NotifyEvent.TIMED_OUT in rule.events)
    ):
        wanted = NotifyEvent.TIMED_OUT
    else:
        wanted = NotifyEvent.FAILED
    return wanted if wanted in rule.events else None


def events_due(job: Job, rule: Rule, now: int) -> list[NotifyEvent]:
    """What the rule asks to be told about this job now, in order (started first)."""
    out = []
    if job.start_time and NotifyEvent.STARTED in rule.events:
        out.append(NotifyEvent.STARTED)
    if (
        job.status in RUNNING
        and job.start_time
        and NotifyEvent.RUNNING_LONGER in rule.events
        and now - job.start_time >= rule.after_minutes * MINUTE_MS
    ):
        out.append(NotifyEvent.RUNNING_LONGER)
    if job.status.ended:
        end = event_for_end(job, rule)
        if end is not None:
            out.append(end)
    return out


def attempts_failed(job: Job, rule: Rule) -> list[int]:
    """The attempts of the job that failed and were retried, when the rule asks for each of them
    (``attemptFailed``); the final outcome is the terminal event, as for any job."""
    if NotifyEvent.ATTEMPT_FAILED not in rule.events:
        return []
    return [a.attempt for a in job.attempts if a.retried]


def time_due(watch: Watch, now: int) -> bool:
    """A runningLonger of a running job may be due (time passes without the job changing)."""
    if watch.job_status not in {str(s) for s in RUNNING} or not watch.job_start:
        return False
    return any(
        NotifyEvent.RUNNING_LONGER in rule.events
        and f"{rule.rule_id}:{NotifyEvent.RUNNING_LONGER}" not in watch.fired
        and now - watch.job_start >= rule.after_minutes * MINUTE_MS
        for rule in watch.rules
    )


def payload_of(job: Job, rule: Rule, event: NotifyEvent, now: int, attempt: int = 0) -> dict[str, Any]:
    """The JSON body of a webhook (and what an email is written from), frozen at enqueue time."""
    job_view: dict[str, Any] = {
        "id": job.job_id,
        "type": str(job.type),
        "status": str(job.status),
        "username": job.username,
        "itemId": job.inputs.item_id,
        "taskId": job.inputs.task_id,
        "runtimeId": job.runtime.runtime_id,
        "created": job.date_created,
        "started": job.start_time or None,
        "ended": job.end_time or None,
        "attempt": job.attempt,
    }
    if job.failure is not None:
        failure = job.failure.to_wire()
        if "traceback" in failure:
            failure["traceback"] = [mail.strip_ansi(t) for t in failure["traceback"]]
        if "evalue" in failure and failure["evalue"] is not None:
            failure["evalue"] = mail.strip_ansi(str(failure["evalue"]))
        job_view["failure"] = failure
    if attempt:  # attemptFailed: which attempt, and why it failed (the job is SUBMITTED again)
        failed = next((a for a in job.attempts if a.attempt == attempt), None)
        if failed is not None:
            job_view["failedAttempt"] = failed.to_wire()
    return {
        "idempotencyKey": idempotency_key(job.job_id, rule.rule_id, event, attempt),
        "event": str(event),
        "ruleId": rule.rule_id,
        "at": now,
        "job": job_view,
    }
