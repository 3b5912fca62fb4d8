"""One contract for the webhook receiver stores (receivers and their delivery log): in-memory, SQLite,
PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Engine

from nbjobs.models.automation import DELIVERIES_KEPT, Delivery, Receiver
from nbjobs.models.portal_stores import ReceiverStore
from nbjobs.store.memory.webhooks import MemoryReceiverStore
from nbjobs.store.webhooks import SqlReceiverStore
from tests.unit.contracts.common import DUPLICATE, assert_implements


@pytest.fixture
def store(engine: Engine | None) -> ReceiverStore:
    return MemoryReceiverStore() if engine is None else SqlReceiverStore(engine)


def receiver(receiver_id: str, created: int = 100, **fields) -> Receiver:
    values = {
        "receiver_id": receiver_id,
        "name": f"hook {receiver_id[:4]}",
        "item_id": "i" * 32,
        "username": "alice",
        "secret": "s" * 64,
        "signature_headers": ("X-Hub-Signature-256",),
        "parameters": {},
        "disabled": False,
        "created": created,
        "updated": created,
        **fields,
    }
    return Receiver(**values)


def delivery(delivery_id: str, receiver_id: str = "r" * 36, received: int = 1, **fields) -> Delivery:
    return Delivery(delivery_id, receiver_id, received, "203.0.113.7", True, **fields)


def test_implementations_match_the_protocol():
    assert_implements(ReceiverStore, SqlReceiverStore, MemoryReceiverStore)


# -- receivers ---------------------------------------------------------------------------------------


def test_add_then_get_round_trips_every_field(store):
    full = Receiver(
        receiver_id="0f8fad5b-d9cb-469f-a165-70867728950e",
        name="GitHub pushes",
        item_id="i" * 32,
        username="alice",
        secret="f" * 64,
        signature_headers=("X-Hub-Signature-256", "X-Signature"),
        parameters={"branch": "main", "nested": {"n": [1, 2.5, None, False]}},
        disabled=True,
        created=1_716_000_000_001,
        updated=1_716_000_000_002,
    )
    store.add(full)
    store.add(receiver("r" * 36, signature_headers=()))
    assert store.get(full.receiver_id) == full
    assert store.get("r" * 36) == receiver("r" * 36, signature_headers=())
    assert store.get("x" * 36) is None


def test_a_receiver_id_is_taken_once(store):
    store.add(receiver("r" * 36, name="first"))
    with pytest.raises(DUPLICATE):
        store.add(receiver("r" * 36, name="second"))
    assert store.get("r" * 36).name == "first" and len(store.list()) == 1


def test_list_is_oldest_first_ties_by_id(store):
    assert store.list() == []
    for receiver_id, created in (("c", 300), ("a", 200), ("b", 300)):
        store.add(receiver(receiver_id * 36, created))
    assert [r.receiver_id[0] for r in store.list()] == ["a", "b", "c"]
    assert store.list()[0] == receiver("a" * 36, 200)


def test_save_replaces_every_field_of_an_existing_receiver_only(store):
    store.add(receiver("r" * 36))
    edited = dataclasses.replace(
        receiver("r" * 36),
        name="renamed",
        item_id="j" * 32,
        username="bob",
        secret="t" * 64,
        signature_headers=("X-A", "X-B"),
        parameters={"k": "v"},
        disabled=True,
        created=1,
        updated=999,
    )
    store.save(edited)
    assert store.get("r" * 36) == edited
    store.save(receiver("x" * 36))
    assert store.get("x" * 36) is None and len(store.list()) == 1


def test_delete_removes_the_receiver_and_its_log_only(store):
    store.add(receiver("a" * 36))
    store.add(receiver("b" * 36))
    store.log(delivery("d1", "a" * 36))
    store.log(delivery("d2", "b" * 36))
    assert store.delete("a" * 36) is True
    assert store.get("a" * 36) is None and store.deliveries("a" * 36) == []
    assert [d.delivery_id for d in store.deliveries("b" * 36)] == ["d2"]
    assert store.delete("a" * 36) is False
    assert [r.receiver_id for r in store.list()] == ["b" * 36]


# -- the delivery log --------------------------------------------------------------------------------


def test_a_delivery_round_trips_every_field(store):
    store.add(receiver("r" * 36))
    accepted = Delivery("d1", "r" * 36, 1_716_000_000_001, "203.0.113.7", True, job_id="j" * 33)
    rejected = Delivery("d2", "r" * 36, 1_716_000_000_002, "::1", False, reason="bad signature")
    store.log(accepted)
    store.log(rejected)
    assert store.deliveries("r" * 36) == [rejected, accepted]
    assert store.deliveries("x" * 36) == []


def test_deliveries_are_newest_first_ties_by_id_and_limited(store):
    store.add(receiver("r" * 36))
    for delivery_id, received in (("d1", 10), ("d3", 20), ("d2", 20), ("d4", 5)):
        store.log(delivery(delivery_id, received=received))
    assert [d.delivery_id for d in store.deliveries("r" * 36)] == ["d3", "d2", "d1", "d4"]
    assert [d.delivery_id for d in store.deliveries("r" * 36, limit=2)] == ["d3", "d2"]


def test_a_delivery_id_is_logged_once(store):
    store.log(delivery("d1", "a" * 36, received=1))
    with pytest.raises(DUPLICATE):  # the id is the log's key, across receivers
        store.log(delivery("d1", "b" * 36, received=2))
    assert store.deliveries("b" * 36) == [] and len(store.deliveries("a" * 36)) == 1


def test_a_long_source_is_cut_to_what_the_column_holds(store):
    store.log(Delivery("d1", "r" * 36, 1, "x" * 300, True))
    assert store.deliveries("r" * 36)[0].source == "x" * 255


def test_the_log_keeps_the_newest_deliveries_of_each_receiver(store, monkeypatch):
    monkeypatch.setattr("nbjobs.store.webhooks.DELIVERIES_KEPT", 3)
    monkeypatch.setattr("nbjobs.store.memory.webhooks.DELIVERIES_KEPT", 3)
    assert DELIVERIES_KEPT > 3  # (the real bound; patched above so the test stays small)
    for delivery_id, received in (("d1", 10), ("d2", 40), ("d3", 30), ("d5", 35)):
        store.log(delivery(delivery_id, "a" * 36, received))
    store.log(delivery("e1", "b" * 36, 1))
    assert [d.delivery_id for d in store.deliveries("a" * 36)] == ["d2", "d5", "d3"]  # d1 dropped
    # "newest" is by (received, id), as deliveries() orders: of the two at 30, d4 outranks d3
    store.log(delivery("d4", "a" * 36, 30))
    assert [d.delivery_id for d in store.deliveries("a" * 36)] == ["d2", "d5", "d4"]
    store.log(delivery("d6", "a" * 36, 5))  # older than everything kept: dropped at once
    assert [d.delivery_id for d in store.deliveries("a" * 36)] == ["d2", "d5", "d4"]
    assert [d.delivery_id for d in store.deliveries("b" * 36)] == ["e1"]


def test_records_read_back_share_nothing_with_the_caller(store):
    parameters = {"x": [1]}
    store.add(receiver("r" * 36, parameters=parameters))
    parameters["x"].append("changed by the caller")
    store.get("r" * 36).parameters["x"].append("changed by a reader")
    store.list()[0].parameters["y"] = "added by a reader"
    assert store.get("r" * 36).parameters == {"x": [1]}
