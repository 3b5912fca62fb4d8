"""In-memory notification store (tests); mirrors store/notifications.py under the same contract."""

from __future__ import annotations

import builtins
import copy
import dataclasses
import threading
from typing import Any

from nbjobs.models.notifications import ATTEMPT_DETAIL_CHARS, Attempt, Delivery, DeliveryStatus, Rule, Watch
from nbjobs.models.stores import JobStore
from nbjobs.store.memory.shared import refuse_taken


class MemoryNotificationStore:
    """``jobs``: the job store to read each watch's job from (as the SQL store joins the job table);
    without it ``watches`` cannot tell (``job_status`` None) and a scan reads every job."""

    def __init__(self, jobs: JobStore | None = None) -> None:
        self._jobs = jobs
        self._rules: dict[str, tuple[Rule, ...]] = {}
        self._watches: dict[str, Watch] = {}
        self._watch_updated: dict[str, int] = {}
        self._deliveries: dict[str, Delivery] = {}
        self._attempts: dict[str, list[Attempt]] = {}
        self._config: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def set_rules(self, scope: str, rules: tuple[Rule, ...], now: int) -> None:
        with self._lock:
            if rules:
                self._rules[scope] = rules
            else:
                self._rules.pop(scope, None)

    def rules(self, scope: str) -> tuple[Rule, ...]:
        return self._rules.get(scope, ())

    def watch(self, job_id: str, username: str, rules: tuple[Rule, ...], now: int) -> None:
        with self._lock:
            if job_id not in self._watches:
                self._watches[job_id] = Watch(job_id, username, rules, now)
                self._watch_updated[job_id] = now

    def watches(self, limit: int = 500, after: tuple[int, str] | None = None) -> builtins.list[Watch]:
        open_ = [
            w
            for w in self._watches.values()
            if not w.done and (after is None or (w.created, w.job_id) > after)
        ]
        page = sorted(open_, key=lambda w: (w.created, w.job_id))[:limit]
        return [self._glance(w) for w in page]

    def _glance(self, watch: Watch) -> Watch:
        if self._jobs is None:
            return watch
        job = self._jobs.get(watch.job_id)
        if job is None:
            return dataclasses.replace(watch, job_status="")
        return dataclasses.replace(
            watch, job_status=str(job.status), job_revision=job.revision, job_start=job.start_time
        )

    def watch_of(self, job_id: str) -> Watch | None:
        return self._watches.get(job_id)

    def fire(
        self,
        job_id: str,
        deliveries: builtins.list[Delivery],
        fired: frozenset[str],
        done: bool,
        seen: str = "",
    ) -> int:
        inserted = 0
        with self._lock:
            for delivery in deliveries:
                refuse_taken(delivery.delivery_id, self._deliveries)
                key = (delivery.job_id, delivery.rule.rule_id, delivery.event, delivery.attempt)
                if any(
                    (d.job_id, d.rule.rule_id, d.event, d.attempt) == key for d in self._deliveries.values()
                ):
                    continue
                self._deliveries[delivery.delivery_id] = dataclasses.replace(
                    delivery,
                    payload=copy.deepcopy(delivery.payload),
                    updated=delivery.updated or delivery.created,
                )
                inserted += 1
            watch = self._watches.get(job_id)
            if watch is not None:
                self._watches[job_id] = dataclasses.replace(
                    watch, fired=watch.fired | fired, done=done, seen=seen[:64] or watch.seen
                )
                now = max((x.created for x in deliveries), default=0)
                if now:
                    self._watch_updated[job_id] = now
        return inserted

    def due(self, now: int, limit: int = 50) -> builtins.list[Delivery]:
        due = [
            d
            for d in self._deliveries.values()
            if d.status == DeliveryStatus.PENDING and d.next_attempt_at <= now
        ]
        return copy.deepcopy(sorted(due, key=lambda d: (d.next_attempt_at, d.delivery_id))[:limit])

    def claim(self, delivery_id: str, seen_next_attempt_at: int, until: int) -> bool:
        with self._lock:
            d = self._deliveries.get(delivery_id)
            if d is None or d.status != DeliveryStatus.PENDING or d.next_attempt_at != seen_next_attempt_at:
                return False
            self._deliveries[delivery_id] = dataclasses.replace(d, next_attempt_at=until)
            return True

    def record(self, attempt: Attempt, status: DeliveryStatus, next_attempt_at: int, last_error: str) -> None:
        with self._lock:
            log = self._attempts.setdefault(attempt.delivery_id, [])
            refuse_taken(attempt.number, (a.number for a in log))
            log.append(dataclasses.replace(attempt, detail=attempt.detail[:ATTEMPT_DETAIL_CHARS]))
            d = self._deliveries.get(attempt.delivery_id)
            if d is not None:
                self._deliveries[d.delivery_id] = dataclasses.replace(
                    d,
                    attempts=d.attempts + 1,
                    status=status,
                    next_attempt_at=next_attempt_at,
                    last_error=last_error[:ATTEMPT_DETAIL_CHARS],
                    updated=attempt.at + attempt.duration_ms,
                )

    def deliveries(self, job_id: str) -> builtins.list[Delivery]:
        mine = [d for d in self._deliveries.values() if d.job_id == job_id]
        return copy.deepcopy(sorted(mine, key=lambda d: (d.created, d.delivery_id)))

    def recent(self, *, status: DeliveryStatus | None = None, limit: int = 100) -> builtins.list[Delivery]:
        chosen = [d for d in self._deliveries.values() if status is None or d.status == status]
        return copy.deepcopy(sorted(chosen, key=lambda d: (d.created, d.delivery_id), reverse=True)[:limit])

    def attempts(self, delivery_id: str) -> builtins.list[Attempt]:
        return sorted(self._attempts.get(delivery_id, []), key=lambda a: a.number)

    def get_config(self, name: str) -> dict[str, Any] | None:
        value = self._config.get(name)
        return copy.deepcopy(value) if value is not None else None

    def put_config(self, name: str, value: dict[str, Any], now: int) -> None:
        with self._lock:
            self._config[name] = copy.deepcopy(value)

    def purge(self, before: int) -> int:
        with self._lock:
            gone = [
                d.delivery_id
                for d in self._deliveries.values()
                if d.status != DeliveryStatus.PENDING and d.updated < before
            ]
            for delivery_id in gone:
                del self._deliveries[delivery_id]
                self._attempts.pop(delivery_id, None)
            for job_id in [j for j, w in self._watches.items() if w.done and self._watch_updated[j] < before]:
                del self._watches[job_id]
                del self._watch_updated[job_id]
            return len(gone)
