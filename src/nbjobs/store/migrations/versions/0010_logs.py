"""the ArcGIS logs resource: log messages kept in the store, and their settings

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_messages",
        # SQLite numbers rows itself only for INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit sequence.
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("machine", sa.String(255), nullable=False),
        sa.Column("process", sa.Integer, nullable=False),
        sa.Column("thread", sa.String(255), nullable=False),
        sa.Column("method_name", sa.String(255), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("runtime", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
    )
    # logs/query pages newest first by time (and the retention deletes by time); jobId filters.
    op.create_index("ix_log_messages_time", "log_messages", ["time", "seq"])
    op.create_index("ix_log_messages_job", "log_messages", ["job_id", "time"])
    op.create_table(
        "log_settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("log_settings")
    op.drop_index("ix_log_messages_job", "log_messages")
    op.drop_index("ix_log_messages_time", "log_messages")
    op.drop_table("log_messages")
