"""interactive notebooks: each user's Jupyter servers ("containers") and the notebooks open in them

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lab_containers",
        sa.Column("container_id", sa.String(40), primary_key=True),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("runtime_id", sa.String(64), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("live_key", sa.String(320), nullable=True, unique=True),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("token", sa.String(128), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("pid_started", sa.Float, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("last_activity", sa.BigInteger, nullable=False),
        sa.Column("ended", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_lab_containers_status", "lab_containers", ["status"])
    op.create_table(
        "lab_notebooks",
        sa.Column("notebook_id", sa.String(40), primary_key=True),
        sa.Column(
            "container_id",
            sa.String(40),
            sa.ForeignKey("lab_containers.container_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("path", sa.String(255), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("opened", sa.BigInteger, nullable=False),
        sa.Column("last_activity", sa.BigInteger, nullable=False),
        sa.Column("closed", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_lab_notebooks_container", "lab_notebooks", ["container_id", "closed"])
    op.create_index("ix_lab_notebooks_open", "lab_notebooks", ["closed", "opened"])


def downgrade() -> None:
    op.drop_table("lab_notebooks")
    op.drop_table("lab_containers")
