"""jobs and their notebook blobs

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("results", sa.JSON, nullable=False),
        sa.Column("failure", sa.JSON, nullable=True),
        sa.Column("runtime_id", sa.String(64), nullable=False),
        sa.Column("runtime_name", sa.String(128), nullable=False),
        sa.Column("runtime_version", sa.String(32), nullable=False),
        sa.Column("kernel_name", sa.String(128), nullable=False),
        sa.Column("date_created", sa.BigInteger, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("start_time", sa.BigInteger, nullable=False),
        sa.Column("end_time", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("retry_on_worker_lost", sa.Integer, nullable=False),
        sa.Column("progress_message", sa.Text, nullable=False),
        sa.Column("progress_percent", sa.Integer, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=False),
        sa.Column("lease_expires", sa.BigInteger, nullable=False),
        sa.Column("runner_pid", sa.Integer, nullable=False),
        sa.Column("kernel_pid", sa.Integer, nullable=False),
    )
    op.create_index("ix_jobs_status_created", "jobs", ["status", "date_created"])
    op.create_index("ix_jobs_username_created", "jobs", ["username", "date_created"])
    op.create_index("ix_jobs_status_lease", "jobs", ["status", "lease_expires"])
    op.create_table(
        "job_blobs",
        sa.Column(
            "job_id", sa.String(40), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_blobs")
    op.drop_index("ix_jobs_status_lease", "jobs")
    op.drop_index("ix_jobs_username_created", "jobs")
    op.drop_index("ix_jobs_status_created", "jobs")
    op.drop_table("jobs")
