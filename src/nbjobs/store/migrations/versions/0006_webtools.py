"""web tools: notebooks published as GP services, and the jobs their calls started

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webtools",
        sa.Column("service_name", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("notebook_id", sa.String(32), nullable=False, unique=True),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("task_name", sa.String(255), nullable=False),
        sa.Column("access", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("runtime_id", sa.String(64), nullable=False),
        sa.Column("snapshot_id", sa.String(128), nullable=False),
        sa.Column("snapshot", sa.LargeBinary, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("modified", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_webtools_owner_created", "webtools", ["owner", "created"])
    op.create_table(
        "webtool_calls",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("service_name", sa.String(32), nullable=False),
        sa.Column("task_name", sa.String(255), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_webtool_calls_service", "webtool_calls", ["service_name"])
    op.create_index("ix_webtool_calls_created", "webtool_calls", ["created"])


def downgrade() -> None:
    op.drop_index("ix_webtool_calls_created", table_name="webtool_calls")
    op.drop_index("ix_webtool_calls_service", table_name="webtool_calls")
    op.drop_table("webtool_calls")
    op.drop_index("ix_webtools_owner_created", table_name="webtools")
    op.drop_table("webtools")
