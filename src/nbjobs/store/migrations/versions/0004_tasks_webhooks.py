"""tasks, task runs, webhook receivers and their deliveries

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("item_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("minute", sa.String(128), nullable=False),
        sa.Column("hour", sa.String(128), nullable=False),
        sa.Column("day_of_month", sa.String(128), nullable=False),
        sa.Column("month", sa.String(128), nullable=False),
        sa.Column("day_of_week", sa.String(128), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("start_date", sa.BigInteger, nullable=False),
        sa.Column("end_date", sa.BigInteger, nullable=False),
        sa.Column("max_occurrences", sa.Integer, nullable=False),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("occurrences", sa.Integer, nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("next_fire", sa.BigInteger, nullable=False),
        sa.Column("last_start", sa.BigInteger, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_tasks_owner_created", "tasks", ["owner", "created"])
    op.create_index("ix_tasks_state_next_fire", "tasks", ["state", "next_fire"])
    op.create_table(
        "task_runs",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("task_id", sa.String(32), nullable=False),
        sa.Column("scheduled_for", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("task_id", "scheduled_for", name="uq_task_runs_occasion"),
    )
    op.create_index("ix_task_runs_status", "task_runs", ["status"])
    op.create_table(
        "webhook_receivers",
        sa.Column("receiver_id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("item_id", sa.String(32), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("signature_headers", sa.JSON, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", sa.String(32), primary_key=True),
        sa.Column("receiver_id", sa.String(36), nullable=False),
        sa.Column("received", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("signature_ok", sa.Boolean, nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_webhook_deliveries_receiver", "webhook_deliveries", ["receiver_id", "received"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_receivers")
    op.drop_table("task_runs")
    op.drop_table("tasks")
