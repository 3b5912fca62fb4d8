"""The Alembic migrations are the schema; tables.py must describe exactly what they build."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from nbjobs.errors import StoreError
from nbjobs.settings import load_settings
from nbjobs.store.engine import make_engine, open_store
from nbjobs.store.migrate import current, upgrade
from nbjobs.store.tables import metadata


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    eng = make_engine(load_settings({}, data_dir=tmp_path, database_url=url))
    yield eng
    eng.dispose()


def test_migrations_match_the_table_definitions(engine):
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upgrade_is_idempotent(engine):
    upgrade(engine)
    first = current(engine)
    upgrade(engine)
    assert current(engine) == first is not None


def test_a_corrupt_database_file_is_a_clear_store_error(tmp_path):
    (tmp_path / "nbjobs.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the job store"):
        open_store(load_settings({}, data_dir=tmp_path))


def test_an_unwritable_data_dir_is_a_clear_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="data directory"):
        open_store(load_settings({}, data_dir=blocker / "data"))


def test_an_unreachable_database_is_a_clear_store_error(tmp_path):
    url = "postgresql://nobody@127.0.0.1:1/none"
    with pytest.raises(StoreError, match="cannot open the job store"):
        open_store(load_settings({}, data_dir=tmp_path, database_url=url))
