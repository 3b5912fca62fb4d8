"""Notifications: rules on jobs, the outbox derived from the job table, and the sender.

The outbox is derived, as the Celery reconciler derives its own: ``scan`` (a housekeeping duty) reads
the watches of jobs with rules, compares each job's status with the events its rules ask for, and
enqueues one delivery per (job, rule, event) under a unique key, so two API replicas or a restart never
enqueue one twice. ``pump`` (another duty) claims due deliveries with a compare-and-set and sends them
on a small thread pool, never on a request's or a supervisor's thread, so a slow receiver slows nobody.
A failed attempt is retried with exponential backoff and full jitter until the retry window (24 h by
default) after the delivery was enqueued; then it is ``gave_up``. Every attempt is in the log.

At-least-once: a crash after a receiver answered and before the attempt was recorded sends again once
the claim's lease has passed; the payload carries an idempotency key (``<job>:<rule>:<event>``), also
sent as the ``Idempotency-Key`` header, for the receiver to drop the duplicate.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import replace
from typing import Any

from nbjobs.clock import Clock
from nbjobs.errors import InvalidRequest, JobNotFound
from nbjobs.models.accounts import Principal, User
from nbjobs.models.jobs import OUTPUT, Job
from nbjobs.models.notifications import (
    Attempt,
    Channel,
    Delivery,
    DeliveryStatus,
    NotifyEvent,
    Rule,
    Watch,
)
from nbjobs.models.portal_stores import NotificationStore
from nbjobs.models.stores import JobStore
from nbjobs.service.authz import may_see, require_admin
from nbjobs.service.notifications import mail, webhook
from nbjobs.service.notifications.events import (
    NotifyPolicy,
    attempts_failed,
    events_due,
    payload_of,
    time_due,
)
from nbjobs.service.notifications.mail import SmtpSettings, merge_smtp, notebook_as_html, smtp_outcome
from nbjobs.service.notifications.rules import parse_rules
from nbjobs.service.notifications.targets import AllowList, Resolver, system_resolver
from nbjobs.service.notifications.webhook import Outcome

log = logging.getLogger(__name__)

MISSING_JOB_GRACE_MS = 60_000  # a watch whose job never appeared (the submit failed after it) is dropped
SCAN_PAGE = 500
SMTP = "smtp"
ALLOW_LIST = "allowlist"


class NotificationService:
    def __init__(
        self,
        store: NotificationStore,
        jobs: JobStore,
        clock: Clock,
        *,
        policy: NotifyPolicy | None = None,
        allow: AllowList | None = None,  # the operator's allow-list (settings); the admin API adds to it
        rng: random.Random | None = None,
        resolve: Resolver = system_resolver,
        on_outcome: Callable[[str], None] | None = None,  # a metrics counter: sent | failed | gave_up
        render_html: Callable[[bytes], str] | None = None,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.clock = clock
        self.policy = policy or NotifyPolicy()
        self.operator_allow = allow or AllowList()
        self.rng = rng or random.Random()
        self.resolve = resolve
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.render_html = render_html or notebook_as_html
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: set[Future[None]] = set()
        self._seq = 0
        self._lock = threading.Lock()

    # -- rules --------------------------------------------------------------------------------------

    def allow_list(self) -> AllowList:
        stored = self.store.get_config(ALLOW_LIST) or {}
        return self.operator_allow.union(AllowList.parse(stored.get("entries", [])))

    def parse(self, raw: str | list[Any] | None, *, field: str = "notifications") -> tuple[Rule, ...]:
        """Rules from a client (JSON text or list), checked: InvalidNotificationRule (400) when bad."""
        return parse_rules(raw, self.allow_list(), resolve=self.resolve, field=field)

    def attach(self, job: Job, rules: tuple[Rule, ...]) -> None:
        """Watch ``job`` for ``rules`` (nothing when there are none)."""
        if rules:
            self.store.watch(job.job_id, job.username, rules, self.clock())

    def set_scope_rules(self, scope: str, rules: tuple[Rule, ...]) -> None:
        """The rules a task (``task:<id>``) or web tool (``webtool:<name>``) gives each job it starts."""
        self.store.set_rules(scope, rules, self.clock())

    def scope_rules(self, scope: str) -> tuple[Rule, ...]:
        return self.store.rules(scope)

    def rules_of_job(self, who: Principal, job_id: str) -> tuple[Rule, ...]:
        self._visible_job(who, job_id)
        watch = self.store.watch_of(job_id)
        return watch.rules if watch is not None else ()

    # -- the outbox ---------------------------------------------------------------------------------

    def scan(self) -> int:
        """Enqueue the deliveries the watched jobs' statuses call for; returns how many were new."""
        now = self.clock()
        enqueued = 0
        after: tuple[int, str] | None = None
        while True:  # in pages, so many queued jobs with rules never starve the newest
            page = self.store.watches(SCAN_PAGE, after)
            for watch in page:
                try:
                    enqueued += self._scan_one(watch, now)
                except Exception:  # one bad watch must not stop the others
                    log.exception("notification scan of job %s failed", watch.job_id)
            if len(page) < SCAN_PAGE:
                return enqueued
            after = (page[-1].created, page[-1].job_id)

    def _scan_one(self, watch: Watch, now: int) -> int:
        if watch.job_status and watch.job_state == watch.seen and not time_due(watch, now):
            return 0  # the job has not changed since the last scan, and no runningLonger is due
        job = self.jobs.get(watch.job_id)
        if job is None:
            if now - watch.created > MISSING_JOB_GRACE_MS:
                self.store.fire(watch.job_id, [], frozenset(), True)  # purged, or never created
            return 0
        new: list[Delivery] = []
        keys: set[str] = set()
        for rule in watch.rules:
            due = [(event, 0) for event in events_due(job, rule, now)]
            due += [(NotifyEvent.ATTEMPT_FAILED, n) for n in attempts_failed(job, rule)]
            for event, attempt in due:
                key = f"{rule.rule_id}:{event}" + (f":{attempt}" if attempt else "")
                if key in watch.fired:
                    continue
                keys.add(key)
                new.append(
                    Delivery(
                        delivery_id=self._new_id(now),
                        job_id=job.job_id,
                        username=job.username,
                        rule=rule,
                        event=event,
                        created=now,
                        next_attempt_at=now,
                        payload=payload_of(job, rule, event, now, attempt),
                        updated=now,
                        attempt=attempt,
                    )
                )
        done = job.status.ended
        seen = f"{job.status}:{job.revision}"
        if not new and not done:
            if seen != watch.seen:
                self.store.fire(job.job_id, [], frozenset(), False, seen)
            return 0
        count = self.store.fire(job.job_id, new, frozenset(keys), done, seen)
        if count:
            log.info("job %s: %d notification(s) enqueued", job.job_id, count)
        return count

    def _new_id(self, now: int) -> str:
        """32 hex digits that sort by creation (time, then order within this process), then random."""
        self._seq = (self._seq + 1) % 0x10000
        return f"{now:012x}{self._seq:04x}{uuid.uuid4().hex[:16]}"

    def pump(self, *, wait: bool = False) -> int:
        """Claim due deliveries and send them on the sender threads; returns how many were started.
        ``wait``: return only when they are done (tests, and ``nbjobs notify flush``)."""
        with self._lock:
            self._inflight = {f for f in self._inflight if not f.done()}
            free = self.policy.senders - len(self._inflight)
            if free <= 0:
                return 0
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.policy.senders, thread_name_prefix="nbjobs-notify")
            now = self.clock()
            started: list[Future[None]] = []
            for delivery in self.store.due(now, free):
                if self.store.claim(
                    delivery.delivery_id, delivery.next_attempt_at, now + self.policy.lease_ms
                ):
                    future = self._pool.submit(self._attempt, delivery)
                    started.append(future)
                    self._inflight.add(future)
        if wait and started:
            wait_all(started)
        return len(started)

    def close(self) -> None:
        """Stop the sender threads, letting attempts in flight finish (their timeouts bound it)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _attempt(self, delivery: Delivery) -> None:
        at = self.clock()
        started = time.monotonic()
        try:
            outcome = self._send(delivery)
        except Exception as exc:  # a bug in a channel is a failed attempt, not a dead sender thread
            log.exception("notification %s: sending failed unexpectedly", delivery.delivery_id)
            outcome = Outcome(False, f"{type(exc).__name__}: {exc}")
        duration_ms = int((time.monotonic() - started) * 1000)
        number = delivery.attempts + 1
        status, next_at, error = DeliveryStatus.SENT, 0, ""
        if not outcome.ok:
            error = outcome.detail
            next_at = self.clock() + self.policy.backoff_ms(number, self.rng)
            window_end = delivery.created + int(self.policy.retry_window_seconds * 1000)
            if outcome.permanent or next_at > window_end:
                status, next_at = DeliveryStatus.GAVE_UP, 0
            else:
                status = DeliveryStatus.PENDING
        self.store.record(
            Attempt(delivery.delivery_id, number, at, duration_ms, outcome.ok, outcome.detail),
            status,
            next_at,
            error,
        )
        self.on_outcome(
            "sent" if outcome.ok else ("gave_up" if status == DeliveryStatus.GAVE_UP else "failed")
        )
        level = logging.INFO if outcome.ok else logging.WARNING
        log.log(
            level,
            "notification %s (%s %s of job %s) attempt %d: %s",
            delivery.delivery_id,
            delivery.rule.channel,
            delivery.event,
            delivery.job_id,
            number,
            outcome.detail,
        )

    def _send(self, delivery: Delivery) -> Outcome:
        rule = delivery.rule
        if rule.channel == Channel.WEBHOOK:
            body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
            return webhook.post(
                rule.target,
                body,
                secret=rule.secret,
                idempotency_key=delivery.idempotency_key,
                event=str(delivery.event),
                allow=self.allow_list(),
                timeout=self.policy.timeout_seconds,
                resolve=self.resolve,
                verify_tls=self.policy.verify_tls,
            )
        html = None
        if rule.attach_notebook:
            output = self.jobs.get_blob(delivery.job_id, OUTPUT)
            if output:
                try:
                    html = self.render_html(output)
                except Exception as exc:  # a notebook nbconvert cannot render still gets its mail
                    log.warning("job %s: notebook not attached: %s", delivery.job_id, exc)
        smtp = self.smtp_settings()
        message = mail.compose(smtp, tuple(rule.target.split(",")), delivery.payload, html)
        return smtp_outcome(smtp, message)

    # -- admin: settings, the log, a test message ----------------------------------------------------

    def smtp_settings(self) -> SmtpSettings:
        stored = self.store.get_config(SMTP)
        smtp = SmtpSettings.from_store(stored) if stored else SmtpSettings()
        return replace(smtp, timeout_seconds=min(smtp.timeout_seconds, 60.0))

    def settings_view(self, who: User | Principal) -> dict[str, Any]:
        require_admin(who, "Only administrators may read the notification settings.")
        stored = self.store.get_config(ALLOW_LIST) or {}
        return {
            "smtp": self.smtp_settings().to_wire(),
            "allowList": list(stored.get("entries", [])),
            "operatorAllowList": self.operator_allow.entries(),
            "retry": {
                "baseSeconds": self.policy.retry_base_seconds,
                "maxSeconds": self.policy.retry_max_seconds,
                "windowSeconds": self.policy.retry_window_seconds,
                "timeoutSeconds": self.policy.timeout_seconds,
            },
        }

    def update_settings(
        self,
        who: User | Principal,
        *,
        smtp: dict[str, Any] | None = None,
        allow_list: list[str] | None = None,
    ) -> dict[str, Any]:
        """Change the SMTP settings (keys of ``SmtpSettings.to_wire`` plus ``password``; absent keys keep
        their value) and/or replace the allow-list."""
        require_admin(who, "Only administrators may change the notification settings.")
        now = self.clock()
        if smtp is not None:
            self.store.put_config(SMTP, merge_smtp(self.smtp_settings(), smtp).to_store(), now)
        if allow_list is not None:
            if not isinstance(allow_list, list) or not all(isinstance(e, str) for e in allow_list):
                raise InvalidRequest("allowList must be a JSON list of addresses, networks or host names")
            parsed = AllowList.parse(allow_list)
            self.store.put_config(ALLOW_LIST, {"entries": parsed.entries()}, now)
        return self.settings_view(who)

    def job_deliveries(self, who: Principal, job_id: str) -> list[tuple[Delivery, list[Attempt]]]:
        """The job's deliveries with their attempts: for its owner and administrators."""
        self._visible_job(who, job_id)
        return [(d, self.store.attempts(d.delivery_id)) for d in self.store.deliveries(job_id)]

    def recent(
        self, who: User | Principal, *, status: str = "", limit: int = 100
    ) -> list[tuple[Delivery, list[Attempt]]]:
        require_admin(who, "Only administrators may list every notification delivery.")
        try:
            wanted = DeliveryStatus(status) if status else None
        except ValueError:
            raise InvalidRequest(
                f"status must be one of {[str(s) for s in DeliveryStatus]}, got {status!r}"
            ) from None
        if not 1 <= limit <= 1000:
            raise InvalidRequest("num must be from 1 to 1000")
        return [
            (d, self.store.attempts(d.delivery_id)) for d in self.store.recent(status=wanted, limit=limit)
        ]

    def send_test(
        self, who: User | Principal, *, email: str = "", url: str = "", secret: str = ""
    ) -> Outcome:
        """A test notification now, on the caller's thread (admins: tries the SMTP settings or a URL)."""
        require_admin(who, "Only administrators may send test notifications.")
        now = self.clock()
        payload = {
            "idempotencyKey": f"test:{uuid.uuid4().hex}",
            "event": "test",
            "ruleId": "test",
            "at": now,
            "job": {"id": "(test)", "status": "TEST", "username": who.username, "itemId": ""},
        }
        if bool(email) == bool(url):
            raise InvalidRequest("give one of email or url")
        if email:
            smtp = self.smtp_settings()
            message = mail.compose(smtp, mail.parse_addresses(email), payload, None)
            return smtp_outcome(smtp, message)
        rules = self.parse([{"events": ["succeeded"], "url": url, "secret": secret or "x" * 16}], field="url")
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return webhook.post(
            rules[0].target,
            body,
            secret=rules[0].secret,
            idempotency_key=str(payload["idempotencyKey"]),
            event="test",
            allow=self.allow_list(),
            timeout=self.policy.timeout_seconds,
            resolve=self.resolve,
            verify_tls=self.policy.verify_tls,
        )

    def purge(self, older_than_ms: int) -> int:
        return self.store.purge(self.clock() - older_than_ms)

    def _visible_job(self, who: Principal, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or not may_see(who, job.username):
            raise JobNotFound(job_id)
