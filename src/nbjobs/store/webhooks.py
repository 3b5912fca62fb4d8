"""Webhook receivers and their delivery log: records, the store protocol and the SQL implementation."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from nbjobs.models.automation import DELIVERIES_KEPT, Delivery, Receiver
from nbjobs.store.tables import webhook_deliveries, webhook_receivers


def _receiver_from_row(row: Any) -> Receiver:
    m = row._mapping
    return Receiver(
        receiver_id=m["receiver_id"],
        name=m["name"],
        item_id=m["item_id"],
        username=m["username"],
        secret=m["secret"],
        signature_headers=tuple(m["signature_headers"] or ()),
        parameters=m["parameters"] or {},
        disabled=bool(m["disabled"]),
        created=m["created"],
        updated=m["updated"],
    )


def _receiver_row(r: Receiver) -> dict[str, Any]:
    return {
        "receiver_id": r.receiver_id,
        "name": r.name,
        "item_id": r.item_id,
        "username": r.username,
        "secret": r.secret,
        "signature_headers": list(r.signature_headers),
        "parameters": r.parameters,
        "disabled": r.disabled,
        "created": r.created,
        "updated": r.updated,
    }


def _delivery_from_row(row: Any) -> Delivery:
    m = row._mapping
    return Delivery(
        delivery_id=m["delivery_id"],
        receiver_id=m["receiver_id"],
        received=m["received"],
        source=m["source"],
        signature_ok=bool(m["signature_ok"]),
        job_id=m["job_id"],
        reason=m["reason"],
    )


class SqlReceiverStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, receiver: Receiver) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(webhook_receivers).values(**_receiver_row(receiver)))

    def get(self, receiver_id: str) -> Receiver | None:
        stmt = select(webhook_receivers).where(webhook_receivers.c.receiver_id == receiver_id)
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return _receiver_from_row(row) if row else None

    def list(self) -> list[Receiver]:
        stmt = select(webhook_receivers).order_by(
            webhook_receivers.c.created, webhook_receivers.c.receiver_id
        )
        with self.engine.connect() as conn:
            return [_receiver_from_row(r) for r in conn.execute(stmt)]

    def save(self, receiver: Receiver) -> None:
        values = _receiver_row(receiver)
        del values["receiver_id"]
        stmt = update(webhook_receivers).where(webhook_receivers.c.receiver_id == receiver.receiver_id)
        with self.engine.begin() as conn:
            conn.execute(stmt.values(**values))

    def delete(self, receiver_id: str) -> bool:
        with self.engine.begin() as conn:
            conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.receiver_id == receiver_id))
            stmt = delete(webhook_receivers).where(webhook_receivers.c.receiver_id == receiver_id)
            return conn.execute(stmt).rowcount == 1

    def log(self, delivery: Delivery) -> None:
        d = webhook_deliveries.c
        kept = (
            select(d.delivery_id)
            .where(d.receiver_id == delivery.receiver_id)
            .order_by(d.received.desc(), d.delivery_id.desc())
            .limit(DELIVERIES_KEPT)
        )
        with self.engine.begin() as conn:
            conn.execute(
                insert(webhook_deliveries).values(
                    delivery_id=delivery.delivery_id,
                    receiver_id=delivery.receiver_id,
                    received=delivery.received,
                    source=delivery.source[:255],
                    signature_ok=delivery.signature_ok,
                    job_id=delivery.job_id,
                    reason=delivery.reason,
                )
            )
            conn.execute(
                delete(webhook_deliveries).where(
                    d.receiver_id == delivery.receiver_id, d.delivery_id.not_in(kept.scalar_subquery())
                )
            )

    def deliveries(self, receiver_id: str, limit: int = 100) -> builtins.list[Delivery]:
        d = webhook_deliveries.c
        stmt = (
            select(webhook_deliveries)
            .where(d.receiver_id == receiver_id)
            .order_by(d.received.desc(), d.delivery_id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_delivery_from_row(r) for r in conn.execute(stmt)]
