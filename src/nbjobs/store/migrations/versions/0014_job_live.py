"""a running job's live view (cells, output tails) beside the job, and an index for the change feed

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_live",
        sa.Column(
            "job_id", sa.String(40), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_jobs_revision", "jobs", ["revision"])


def downgrade() -> None:
    op.drop_index("ix_jobs_revision", table_name="jobs")
    op.drop_table("job_live")
