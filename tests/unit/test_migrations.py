"""The Alembic migrations are the schema; tables.py must describe exactly what they build."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from nbjobs.errors import StoreError
from nbjobs.settings import load_settings
from nbjobs.store.engine import make_engine, open_store
from nbjobs.store.migrate import current, upgrade
from nbjobs.store.runtimes import SqlRuntimeStore
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


def test_0013_gives_existing_runtimes_the_start_defaults(engine):
    upgrade(engine, "0012")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runtimes (runtime_id, name, version, python, kernel_name, max_cpu, max_memory, "
                "max_memory_unit, max_swap_memory, max_swap_memory_unit, max_wall_minutes, max_output_bytes, "
                "requires_advanced_privileges, disabled, is_default, created, updated) VALUES ('r1', 'Geo', "
                "'11.0', '/opt/geo/bin/python', 'nbjobs-r1', 2, 1.5, 'g', 0, 'g', 30, 0, :f, :f, :f, 5, 6)"
            ),
            {"f": False},
        )
    upgrade(engine)
    spec = SqlRuntimeStore(engine).get("r1")
    assert spec is not None and (spec.name, spec.python, spec.max_cpu, spec.max_wall_minutes) == (
        "Geo",
        "/opt/geo/bin/python",
        2,
        30,
    )
    assert (spec.preload, spec.start_method, spec.start_status) == ((), "fork", None)


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
