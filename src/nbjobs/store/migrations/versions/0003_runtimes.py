"""runtimes: kernelspec + python environment + limits

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runtimes",
        sa.Column("runtime_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("python", sa.Text, nullable=False),
        sa.Column("kernel_name", sa.String(128), nullable=False),
        sa.Column("max_cpu", sa.Float, nullable=False),
        sa.Column("max_memory", sa.Float, nullable=False),
        sa.Column("max_memory_unit", sa.String(4), nullable=False),
        sa.Column("max_swap_memory", sa.Float, nullable=False),
        sa.Column("max_swap_memory_unit", sa.String(4), nullable=False),
        sa.Column("max_wall_minutes", sa.Float, nullable=False),
        sa.Column("max_output_bytes", sa.BigInteger, nullable=False),
        sa.Column("requires_advanced_privileges", sa.Boolean, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("runtimes")
