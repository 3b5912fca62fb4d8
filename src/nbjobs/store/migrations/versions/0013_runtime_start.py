"""how a runtime's kernels start: the modules a fork template preloads, fork or spawn, and the start
status the execution side reports

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runtimes") as batch:
        batch.add_column(sa.Column("preload", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("start_method", sa.String(16), nullable=False, server_default="fork"))
        batch.add_column(sa.Column("start_status", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runtimes") as batch:
        batch.drop_column("start_status")
        batch.drop_column("start_method")
        batch.drop_column("preload")
