"""Alembic, driven programmatically: no alembic.ini to ship or find."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from nbjobs import __version__
from nbjobs.errors import StoreVersionError


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "nbjobs.store:migrations")
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is already there.

    Raises StoreVersionError, touching nothing, when the database is at a revision this code does not
    know (written by a newer nbjobs): Alembic would only fail with "Can't locate revision"."""
    cfg = alembic_config(engine)
    at = current(engine)
    if at is not None:
        scripts = ScriptDirectory.from_config(cfg)
        if at not in {script.revision for script in scripts.walk_revisions()}:
            url = engine.url.render_as_string(hide_password=True)
            raise StoreVersionError(
                f"the database {url} is at schema revision {at!r}, unknown to nbjobs {__version__} "
                f"(newest known: {scripts.get_current_head()}): it was written by a newer nbjobs; "
                "run that version, or restore a backup"
            )
    command.upgrade(cfg, revision)


def current(engine: Engine) -> str | None:
    """The schema revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
