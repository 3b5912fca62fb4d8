"""Alembic environment: runs against the Engine nbjobs passes in ``config.attributes``."""

from alembic import context
from sqlalchemy import create_engine

from nbjobs.store.tables import metadata

config = context.config
engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url"))

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
