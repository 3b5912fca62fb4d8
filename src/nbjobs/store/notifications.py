"""Notification rules, watches, the delivery outbox and its attempt log, in SQL (SQLite, PostgreSQL)."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from nbjobs.models.notifications import (
    ATTEMPT_DETAIL_CHARS,
    Attempt,
    Delivery,
    DeliveryStatus,
    NotifyEvent,
    Rule,
    Watch,
)
from nbjobs.store.tables import (
    jobs,
    notification_attempts,
    notification_config,
    notification_deliveries,
    notification_rules,
    notification_watches,
)


def _rules_of(data: Any) -> tuple[Rule, ...]:
    return tuple(Rule.from_store(r) for r in data or ())


def _watch_from_row(row: Any, *, joined: bool = False) -> Watch:
    m = row._mapping
    return Watch(
        job_id=m["job_id"],
        username=m["username"],
        rules=_rules_of(m["rules"]),
        created=m["created"],
        fired=frozenset(m["fired"] or ()),
        done=bool(m["done"]),
        seen=m["seen"],
        job_status=(m["job_status"] or "") if joined else None,
        job_revision=(m["job_revision"] or 0) if joined else 0,
        job_start=(m["job_start"] or 0) if joined else 0,
    )


def _delivery_from_row(row: Any) -> Delivery:
    m = row._mapping
    return Delivery(
        delivery_id=m["delivery_id"],
        job_id=m["job_id"],
        username=m["username"],
        rule=Rule.from_store(m["rule"]),
        event=NotifyEvent(m["event"]),
        created=m["created"],
        next_attempt_at=m["next_attempt_at"],
        payload=m["payload"] or {},
        status=DeliveryStatus(m["status"]),
        attempts=m["attempts"],
        last_error=m["last_error"],
        updated=m["updated"],
        attempt=m["attempt"],
    )


def _attempt_from_row(row: Any) -> Attempt:
    m = row._mapping
    return Attempt(m["delivery_id"], m["number"], m["at"], m["duration_ms"], bool(m["ok"]), m["detail"])


class SqlNotificationStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- rules of tasks and web tools ---------------------------------------------------------------

    def set_rules(self, scope: str, rules: tuple[Rule, ...], now: int) -> None:
        t = notification_rules
        with self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.scope == scope))
            if rules:
                conn.execute(insert(t).values(scope=scope, rules=[r.to_store() for r in rules], updated=now))

    def rules(self, scope: str) -> tuple[Rule, ...]:
        t = notification_rules
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.rules).where(t.c.scope == scope)).first()
        return _rules_of(row[0]) if row else ()

    # -- watches ------------------------------------------------------------------------------------

    def watch(self, job_id: str, username: str, rules: tuple[Rule, ...], now: int) -> None:
        values = {
            "job_id": job_id,
            "username": username,
            "rules": [r.to_store() for r in rules],
            "fired": [],
            "done": False,
            "seen": "",
            "created": now,
            "updated": now,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(notification_watches).values(**values))
        except IntegrityError:
            pass  # watched already: the first rules stand

    def watches(self, limit: int = 500, after: tuple[int, str] | None = None) -> builtins.list[Watch]:
        w = notification_watches.c
        stmt = (
            select(
                notification_watches,
                jobs.c.status.label("job_status"),
                jobs.c.revision.label("job_revision"),
                jobs.c.start_time.label("job_start"),
            )
            .select_from(notification_watches.outerjoin(jobs, jobs.c.job_id == w.job_id))
            .where(w.done.is_(False))
        )
        if after is not None:
            stmt = stmt.where(or_(w.created > after[0], and_(w.created == after[0], w.job_id > after[1])))
        stmt = stmt.order_by(w.created, w.job_id).limit(limit)
        with self.engine.connect() as conn:
            return [_watch_from_row(r, joined=True) for r in conn.execute(stmt)]

    def watch_of(self, job_id: str) -> Watch | None:
        stmt = select(notification_watches).where(notification_watches.c.job_id == job_id)
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return _watch_from_row(row) if row else None

    def fire(
        self,
        job_id: str,
        deliveries: builtins.list[Delivery],
        fired: frozenset[str],
        done: bool,
        seen: str = "",
    ) -> int:
        inserted = 0
        d = notification_deliveries.c
        with self.engine.begin() as conn:
            for delivery in deliveries:
                taken = conn.execute(
                    select(d.delivery_id).where(
                        d.job_id == delivery.job_id,
                        d.rule_id == delivery.rule.rule_id,
                        d.event == str(delivery.event),
                        d.attempt == delivery.attempt,
                    )
                ).first()
                if taken:
                    continue
                try:
                    with conn.begin_nested():  # a concurrent scan of another replica won the unique key
                        conn.execute(insert(notification_deliveries).values(**_delivery_row(delivery)))
                    inserted += 1
                except IntegrityError:
                    pass
            w = notification_watches.c
            row = conn.execute(select(w.fired).where(w.job_id == job_id)).first()
            if row is not None:
                merged = sorted(set(row[0] or ()) | fired)
                now = max((x.created for x in deliveries), default=0)
                values: dict[str, Any] = {"fired": merged, "done": done}
                if seen:
                    values["seen"] = seen[:64]
                if now:
                    values["updated"] = now
                conn.execute(update(notification_watches).where(w.job_id == job_id).values(**values))
        return inserted

    # -- the outbox ---------------------------------------------------------------------------------

    def due(self, now: int, limit: int = 50) -> builtins.list[Delivery]:
        d = notification_deliveries.c
        stmt = (
            select(notification_deliveries)
            .where(d.status == str(DeliveryStatus.PENDING), d.next_attempt_at <= now)
            .order_by(d.next_attempt_at, d.delivery_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_delivery_from_row(r) for r in conn.execute(stmt)]

    def claim(self, delivery_id: str, seen_next_attempt_at: int, until: int) -> bool:
        d = notification_deliveries.c
        stmt = (
            update(notification_deliveries)
            .where(
                d.delivery_id == delivery_id,
                d.status == str(DeliveryStatus.PENDING),
                d.next_attempt_at == seen_next_attempt_at,
            )
            .values(next_attempt_at=until)
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def record(self, attempt: Attempt, status: DeliveryStatus, next_attempt_at: int, last_error: str) -> None:
        d = notification_deliveries.c
        with self.engine.begin() as conn:
            conn.execute(
                insert(notification_attempts).values(
                    delivery_id=attempt.delivery_id,
                    number=attempt.number,
                    at=attempt.at,
                    duration_ms=attempt.duration_ms,
                    ok=attempt.ok,
                    detail=attempt.detail[:ATTEMPT_DETAIL_CHARS],
                )
            )
            conn.execute(
                update(notification_deliveries)
                .where(d.delivery_id == attempt.delivery_id)
                .values(
                    attempts=d.attempts + 1,
                    status=str(status),
                    next_attempt_at=next_attempt_at,
                    last_error=last_error[:ATTEMPT_DETAIL_CHARS],
                    updated=attempt.at + attempt.duration_ms,
                )
            )

    def deliveries(self, job_id: str) -> builtins.list[Delivery]:
        d = notification_deliveries.c
        stmt = select(notification_deliveries).where(d.job_id == job_id).order_by(d.created, d.delivery_id)
        with self.engine.connect() as conn:
            return [_delivery_from_row(r) for r in conn.execute(stmt)]

    def recent(self, *, status: DeliveryStatus | None = None, limit: int = 100) -> builtins.list[Delivery]:
        d = notification_deliveries.c
        stmt = select(notification_deliveries)
        if status is not None:
            stmt = stmt.where(d.status == str(status))
        stmt = stmt.order_by(d.created.desc(), d.delivery_id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_delivery_from_row(r) for r in conn.execute(stmt)]

    def attempts(self, delivery_id: str) -> builtins.list[Attempt]:
        a = notification_attempts.c
        stmt = select(notification_attempts).where(a.delivery_id == delivery_id).order_by(a.number)
        with self.engine.connect() as conn:
            return [_attempt_from_row(r) for r in conn.execute(stmt)]

    # -- settings -----------------------------------------------------------------------------------

    def get_config(self, name: str) -> dict[str, Any] | None:
        t = notification_config
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.value).where(t.c.name == name)).first()
        return dict(row[0]) if row else None

    def put_config(self, name: str, value: dict[str, Any], now: int) -> None:
        t = notification_config
        with self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.name == name))
            conn.execute(insert(t).values(name=name, value=value, updated=now))

    def purge(self, before: int) -> int:
        d = notification_deliveries.c
        finished = and_(d.status != str(DeliveryStatus.PENDING), d.updated < before)
        with self.engine.begin() as conn:
            conn.execute(
                delete(notification_attempts).where(
                    notification_attempts.c.delivery_id.in_(select(d.delivery_id).where(finished))
                )
            )
            gone = conn.execute(delete(notification_deliveries).where(finished)).rowcount
            w = notification_watches.c
            conn.execute(delete(notification_watches).where(w.done.is_(True), w.updated < before))
        return int(gone)


def _delivery_row(delivery: Delivery) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
        "job_id": delivery.job_id,
        "username": delivery.username,
        "rule_id": delivery.rule.rule_id,
        "rule": delivery.rule.to_store(),
        "event": str(delivery.event),
        "payload": delivery.payload,
        "status": str(delivery.status),
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "created": delivery.created,
        "next_attempt_at": delivery.next_attempt_at,
        "updated": delivery.updated or delivery.created,
        "attempt": delivery.attempt,
    }
