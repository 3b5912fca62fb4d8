"""``nbjobs db``: schema management."""

from __future__ import annotations

from pathlib import Path

import click

from nbjobs.errors import NbJobsError
from nbjobs.settings import load_settings


@click.group()
def db() -> None:
    """Manage the job database (SQLite under the data dir, or NBJOBS_DATABASE_URL)."""


@db.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory holding the SQLite database. [env NBJOBS_DATA_DIR; default ./var]",
)
@click.option("--database-url", help="SQLAlchemy/libpq URL of the database. [env NBJOBS_DATABASE_URL]")
def upgrade(data_dir: Path | None, database_url: str | None) -> None:
    """Create or migrate the schema to the newest revision (safe to run again)."""
    from nbjobs.roots.operator import upgrade_database

    try:
        settings = load_settings(data_dir=data_dir, database_url=database_url)
        url, before, after = upgrade_database(settings)
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    except Exception as exc:  # a driver error names the real problem; no traceback for it
        raise click.ClickException(f"cannot upgrade the database: {exc}") from exc
    click.echo(f"{url}: {before or 'empty'} -> {after}")
