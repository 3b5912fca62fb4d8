"""retry policies of jobs and web tools, the backoff before a retry, and the history of attempts

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("retry_policy", sa.JSON, nullable=True))
        batch.add_column(sa.Column("not_before", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("attempts", sa.JSON, nullable=True))
    with op.batch_alter_table("webtools") as batch:
        batch.add_column(sa.Column("retry_policy", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webtools") as batch:
        batch.drop_column("retry_policy")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("attempts")
        batch.drop_column("not_before")
        batch.drop_column("retry_policy")
