"""One contract for the stored configuration overrides: in-memory, SQLite, PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from nbjobs.models.stores import ConfigStore
from nbjobs.store.config import SqlConfigStore
from nbjobs.store.memory.config import MemoryConfigStore
from tests.unit.contracts.common import assert_implements


@pytest.fixture
def store(engine: Engine | None) -> ConfigStore:
    return MemoryConfigStore() if engine is None else SqlConfigStore(engine)


def test_implementations_match_the_protocol():
    assert_implements(ConfigStore, SqlConfigStore, MemoryConfigStore)


def test_nothing_is_stored_at_first(store):
    assert store.load() == {}


def test_every_json_value_round_trips(store):
    values = {
        "maxExecuteNotebookTimeMinutes": 120,
        "ratio": 0.25,
        "webhookSecretHeader": "X-Sig",
        "enableWebhooks": False,
        "optional": None,
        "allowedRuntimes": ["a", "b"],
        "limits": {"perUser": {"jobs": 3, "memory": [1.5, "g"]}, "empty": {}},
    }
    store.replace(values, 100)
    assert store.load() == values


def test_replace_makes_the_complete_set(store):
    store.replace({"a": 1, "b": 2}, 100)
    store.replace({"b": 3, "c": 4}, 200)
    assert store.load() == {"b": 3, "c": 4}
    store.replace({}, 300)
    assert store.load() == {}


def test_values_read_back_share_nothing_with_the_caller(store):
    values = {"list": [1], "nested": {"k": "v"}}
    store.replace(values, 1)
    values["list"].append("changed by the caller")
    values["added"] = True
    loaded = store.load()
    loaded["list"].append("changed by a reader")
    loaded["nested"]["k"] = "changed by a reader"
    loaded["other"] = 1
    assert store.load() == {"list": [1], "nested": {"k": "v"}}
