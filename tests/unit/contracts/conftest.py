"""The backends every contract suite runs over: the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from nbjobs.settings import load_settings
from nbjobs.store.engine import open_store

BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine | None]:
    """None for the in-memory fakes, else an Engine on a freshly migrated, empty database."""
    if request.param == "memory":
        yield None
        return
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    jobs = open_store(load_settings({}, data_dir=tmp_path, database_url=url))
    yield jobs.engine
    jobs.close()
