"""item uploads: items being added in parts (addItem multipart=true), until they are committed

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "item_uploads",
        sa.Column("item_id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("properties", sa.JSON, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_item_uploads_created", "item_uploads", ["created"])
    op.create_table(
        "item_upload_parts",
        sa.Column("item_id", sa.String(32), primary_key=True),
        sa.Column("part_num", sa.Integer, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("item_upload_parts")
    op.drop_index("ix_item_uploads_created", table_name="item_uploads")
    op.drop_table("item_uploads")
