"""The engine factory: SQLite under the data dir (WAL, 0600) or PostgreSQL by URL, migrated on open.

Outages are translated here, once for every store: a database that cannot be reached (restarting,
stopped, a dropped session) raises ``StoreUnavailable`` and a full disk ``DiskFull``, both 503 for
clients and retried by the background loops, instead of driver errors that would read as bugs.
PostgreSQL connections are pinged at checkout, so a restart costs at most the statements in flight.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, make_url, select
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DatabaseError, OperationalError

from nbjobs.errors import DiskFull, StoreError, StoreUnavailable
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

        event.listen(engine, "handle_error", _translate)
        return engine
    try:
        # pre-ping: a pooled connection a restart killed is replaced at checkout, not used and failed;
        # the connect timeout bounds how long a request waits on a database that does not answer.
        timeout = {} if "connect_timeout" in make_url(url).query else {"connect_timeout": 5}
        engine = create_engine(url, pool_pre_ping=True, connect_args=timeout)
    except ImportError as exc:  # psycopg missing
        raise StoreError(
            f"the database driver for {url.split(':', 1)[0]} is not installed; "
            "install the extra: pip install 'nbjobs[postgres]'"
        ) from exc
    event.listen(engine, "handle_error", _translate)
    return engine


SQLITE_FULL = 13
PG_DISK_FULL = "53100"
# 08: connection exceptions; 57P01-03: admin/crash shutdown, cannot connect now (starting up)
PG_UNAVAILABLE = ("08", "57P01", "57P02", "57P03")


def _translate(ctx: ExceptionContext) -> None:
    """Raise DiskFull / StoreUnavailable for the driver errors they mean (an SQLAlchemy
    ``handle_error`` hook: the pool still invalidates a dropped connection first). A pre-ping is
    left alone: SQLAlchemy reconnects on its own there."""
    if ctx.is_pre_ping:
        return
    orig = ctx.original_exception
    sqlstate = str(getattr(orig, "sqlstate", "") or "")
    if getattr(orig, "sqlite_errorcode", None) == SQLITE_FULL or sqlstate == PG_DISK_FULL:
        raise DiskFull() from ctx.sqlalchemy_exception
    if ctx.dialect.name == "sqlite":
        return  # "database is locked" and the like are not outages
    # ctx.connection is None: the connect itself failed (refused, starting up, timed out)
    failed_connect = ctx.connection is None and isinstance(ctx.sqlalchemy_exception, OperationalError)
    if ctx.is_disconnect or failed_connect or sqlstate.startswith(PG_UNAVAILABLE):
        raise StoreUnavailable() from ctx.sqlalchemy_exception


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
    except StoreUnavailable as exc:  # translated by _translate: say what could not be opened, and why
        engine.dispose()
        cause = getattr(exc.__cause__, "orig", exc)
        raise StoreError(f"cannot open the job store at {_redact(engine)}: {cause}") from exc
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
