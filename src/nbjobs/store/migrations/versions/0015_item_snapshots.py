"""item snapshots: kept versions of a notebook item (the ArcGIS snapshots API, saves from JupyterLab)

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "item_snapshots",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),  # orders same-ms snapshots
        sa.Column("resource_key", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "item_id", sa.String(32), sa.ForeignKey("items.item_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("automatic", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("private_access", sa.Boolean, nullable=False),
        sa.Column("runtime_name", sa.String(255), nullable=False),
        sa.Column("runtime_version", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_item_snapshots_item", "item_snapshots", ["item_id", "created"])


def downgrade() -> None:
    op.drop_index("ix_item_snapshots_item", table_name="item_snapshots")
    op.drop_table("item_snapshots")
