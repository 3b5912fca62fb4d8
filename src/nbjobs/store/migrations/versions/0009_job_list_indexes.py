"""indexes for a store with many ended jobs: the admin job list, the per-user queue cap, the purge

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The unfiltered job list (admins) in either order, without sorting the whole table.
    op.create_index("ix_jobs_created", "jobs", ["date_created", "job_id"])
    # The per-user count of jobs not ended (NBJOBS_MAX_QUEUED_JOBS_PER_USER, NBJOBS_MAX_JOBS_PER_USER),
    # read on every submit and claim, without visiting the user's ended jobs.
    op.create_index("ix_jobs_username_status", "jobs", ["username", "status"])
    # The clean-up of jobs ended more than asyncJobsCleanAgeHours ago.
    op.create_index("ix_jobs_status_end", "jobs", ["status", "end_time"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_end", "jobs")
    op.drop_index("ix_jobs_username_status", "jobs")
    op.drop_index("ix_jobs_created", "jobs")
