"""The engine factory: SQLite under the data dir (WAL, 0600) or PostgreSQL by URL, migrated on open."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.exc import DatabaseError, OperationalError

from nbjobs.errors import StoreError
from nbjobs.settings import Settings
from nbjobs.store.jobs import SqlJobStore
from nbjobs.store.tables import jobs


def make_engine(settings: Settings) -> Engine:
    """An Engine for the configured database; SQLite gets WAL and a generous busy timeout."""
    url = settings.store.sqlalchemy_url
    if url.startswith("sqlite"):
        try:
            settings.store.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {settings.store.data_dir}: {exc}") from exc
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except ImportError as exc:  # psycopg missing
        raise StoreError(
            f"the database driver for {url.split(':', 1)[0]} is not installed; "
            "install the extra: pip install 'nbjobs[postgres]'"
        ) from exc


def open_store(settings: Settings, *, migrate: bool = True) -> SqlJobStore:
    """Open (and by default migrate) the configured store, or raise StoreError with a clear reason."""
    from nbjobs.store.migrate import upgrade

    engine = make_engine(settings)
    try:
        if migrate:
            upgrade(engine)
        with engine.connect() as conn:
            conn.execute(select(func.count()).select_from(jobs)).scalar_one()
        _protect(settings, engine)
    except (OperationalError, DatabaseError) as exc:
        engine.dispose()
        raise StoreError(f"cannot open the job store at {_redact(engine)}: {exc.orig}") from exc
    except StoreError:  # e.g. a schema revision newer than this code: nothing was changed
        engine.dispose()
        raise
    return SqlJobStore(engine)


def _protect(settings: Settings, engine: Engine) -> None:
    """The SQLite file holds every notebook and token hash: only the server's user may read it
    (SQLite gives its -wal and -shm files the same mode). The data dir stays traversable, not
    listable, so kernels running as another user can reach their own job directory."""
    if engine.url.get_backend_name() != "sqlite" or not engine.url.database:
        return
    os.chmod(engine.url.database, 0o600)
    os.chmod(settings.store.data_dir, 0o711)


def _redact(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
