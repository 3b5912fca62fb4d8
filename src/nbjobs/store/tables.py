"""SQLAlchemy table definitions. Alembic migrations are the source of truth for the schema; these
mirror them for queries, and a test checks the two agree."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("type", String(40), nullable=False),
    Column("username", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("results", JSON, nullable=False),
    Column("failure", JSON, nullable=True),
    Column("runtime_id", String(64), nullable=False),
    Column("runtime_name", String(128), nullable=False),
    Column("runtime_version", String(32), nullable=False),
    Column("kernel_name", String(128), nullable=False),
    Column("date_created", BigInteger, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("start_time", BigInteger, nullable=False, default=0),
    Column("end_time", BigInteger, nullable=False, default=0),
    Column("attempt", Integer, nullable=False, default=0),
    Column("retry_on_worker_lost", Integer, nullable=False, default=0),
    Column("progress_message", Text, nullable=False, default=""),
    Column("progress_percent", Integer, nullable=False, default=0),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("worker_id", String(255), nullable=False, default=""),
    Column("lease_expires", BigInteger, nullable=False, default=0),
    Column("runner_pid", Integer, nullable=False, default=0),
    Column("kernel_pid", Integer, nullable=False, default=0),
    Column("dispatched_at", BigInteger, nullable=False, default=0, server_default="0"),  # last broker publish
    Column("retry_policy", JSON, nullable=True),  # 0012: RetryPolicy.to_wire(); NULL = no retries
    Column("not_before", BigInteger, nullable=False, default=0, server_default="0"),  # 0012: retry backoff
    Column("attempts", JSON, nullable=True),  # 0012: the ended attempts, oldest first
    Index("ix_jobs_status_created", "status", "date_created"),
    Index("ix_jobs_username_created", "username", "date_created"),
    Index("ix_jobs_status_lease", "status", "lease_expires"),
    Index("ix_jobs_created", "date_created", "job_id"),  # 0009: the unfiltered list, either order
    Index("ix_jobs_username_status", "username", "status"),  # 0009: per-user count of jobs not ended
    Index("ix_jobs_status_end", "status", "end_time"),  # 0009: the clean-up of old ended jobs
    Index("ix_jobs_revision", "revision"),  # 0014: the change feed (jobs changed since a revision)
)

# Live `nbjobs worker` processes (and servers running a local pool): the machines view and recovery.
workers = Table(
    "workers",
    metadata,
    Column("worker_id", String(255), primary_key=True),  # the prefix of the job.worker_id values it claims
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("runtimes", JSON, nullable=False),  # [{"id", "name"}]
    Column("queues", JSON, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # online | draining
    Column("version", String(32), nullable=False),
    Column("started", BigInteger, nullable=False),
    Column("last_heartbeat", BigInteger, nullable=False),
    Index("ix_workers_last_heartbeat", "last_heartbeat"),
)

job_blobs = Table(
    "job_blobs",
    metadata,
    Column("job_id", String(40), ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(16), primary_key=True),  # "input" | "output"
    Column("data", LargeBinary, nullable=False),
    Column("updated", BigInteger, nullable=False),
)

# 0014: a running job's live view (models/live.py), one row per job, for its latest attempt
job_live = Table(
    "job_live",
    metadata,
    Column("job_id", String(40), ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("data", JSON, nullable=False),  # LiveProgress.to_store()
    Column("updated", BigInteger, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("username", String(128), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(32), nullable=False),
    Column("privileges", JSON, nullable=False),
    Column("full_name", String(255), nullable=False, default=""),
    Column("email", String(255), nullable=False, default=""),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created", BigInteger, nullable=False),
    Column("modified", BigInteger, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 hex; the token itself is never stored
    Column("username", String(128), ForeignKey("users.username", ondelete="CASCADE"), nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("client", String(255), nullable=False, default=""),
    Index("ix_tokens_username", "username"),
    Index("ix_tokens_expires", "expires"),
)

items = Table(
    "items",
    metadata,
    Column("item_id", String(32), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("title", String(255), nullable=False),
    Column("type", String(64), nullable=False),
    Column("type_keywords", JSON, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("snippet", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False),
    Column("filename", String(255), nullable=False, default=""),
    Column("size", BigInteger, nullable=False, default=0),
    Column("created", BigInteger, nullable=False),
    Column("modified", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Index("ix_items_owner_created", "owner", "created"),
)

# Executed notebooks waiting to be written back to their item (executeNotebook updatePortalItem=true).
item_updates = Table(
    "item_updates",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("item_id", String(32), nullable=False),
    Column("created", BigInteger, nullable=False),
)

# Items being uploaded in parts (addItem multipart=true, addPart, commit): they become rows of `items`
# only at commit, so an abandoned upload never shows as an item. Parts are deleted with their upload.
item_uploads = Table(
    "item_uploads",
    metadata,
    Column("item_id", String(32), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("properties", JSON, nullable=False),  # item fields sent with addItem, applied at commit
    Column("created", BigInteger, nullable=False),
    Index("ix_item_uploads_created", "created"),
)

item_upload_parts = Table(
    "item_upload_parts",
    metadata,
    Column("item_id", String(32), primary_key=True),
    Column("part_num", Integer, primary_key=True),  # 1-based; the file is the parts in this order
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# 0015: kept versions of an item (models/items.py Snapshot), gone with their item
item_snapshots = Table(
    "item_snapshots",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # orders snapshots of the same ms
    Column("resource_key", String(64), nullable=False, unique=True),
    Column("item_id", String(32), ForeignKey("items.item_id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("automatic", Boolean, nullable=False),
    Column("source", String(64), nullable=False),
    Column("private_access", Boolean, nullable=False),
    Column("runtime_name", String(255), nullable=False),
    Column("runtime_version", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Index("ix_item_snapshots_item", "item_id", "created"),
)

runtimes = Table(
    "runtimes",
    metadata,
    Column("runtime_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("version", String(32), nullable=False),
    Column("python", Text, nullable=False),  # "" = the server's own interpreter
    Column("kernel_name", String(128), nullable=False),
    Column("max_cpu", Float, nullable=False),  # CPUs; 0 = no limit
    Column("max_memory", Float, nullable=False),  # in max_memory_unit; 0 = no limit
    Column("max_memory_unit", String(4), nullable=False),
    Column("max_swap_memory", Float, nullable=False),  # 0 = no swap beyond max_memory
    Column("max_swap_memory_unit", String(4), nullable=False),
    Column("max_wall_minutes", Float, nullable=False),  # 0 = the server maximum
    Column("max_output_bytes", BigInteger, nullable=False),  # 0 = the server default
    Column("requires_advanced_privileges", Boolean, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("is_default", Boolean, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    Column("preload", JSON, nullable=False, default=list, server_default="[]"),  # 0013: module names
    Column("start_method", String(16), nullable=False, default="fork", server_default="fork"),  # 0013
    Column("start_status", JSON, nullable=True),  # 0013: StartStatus as reported; NULL = not yet
)

# -- automation (issue 6) ---------------------------------------------------------------------------

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String(32), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("item_id", String(32), nullable=False),
    Column("type", String(64), nullable=False),
    Column("title", String(255), nullable=False),
    Column("minute", String(128), nullable=False),
    Column("hour", String(128), nullable=False),
    Column("day_of_month", String(128), nullable=False),
    Column("month", String(128), nullable=False),
    Column("day_of_week", String(128), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("start_date", BigInteger, nullable=False),  # 0 = from creation
    Column("end_date", BigInteger, nullable=False),  # 0 = no end
    Column("max_occurrences", Integer, nullable=False),  # 0 = unlimited
    Column("overlap", String(16), nullable=False),  # skip | queue
    Column("state", String(16), nullable=False),  # active | paused | completed | failed
    Column("occurrences", Integer, nullable=False),
    Column("consecutive_failures", Integer, nullable=False),
    Column("next_fire", BigInteger, nullable=False),  # 0 = none
    Column("last_start", BigInteger, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    Index("ix_tasks_owner_created", "owner", "created"),
    Index("ix_tasks_state_next_fire", "state", "next_fire"),
)

# One row per occasion of a task. The unique (task_id, scheduled_for) key is what makes an occasion
# fire once, however many schedulers tick.
task_runs = Table(
    "task_runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("task_id", String(32), nullable=False),
    Column("scheduled_for", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # scheduled | executing | succeeded | failed | skipped
    Column("result", Text, nullable=False),
    Column("job_id", String(40), nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    UniqueConstraint("task_id", "scheduled_for", name="uq_task_runs_occasion"),
    Index("ix_task_runs_status", "status"),
)

webhook_receivers = Table(
    "webhook_receivers",
    metadata,
    Column("receiver_id", String(36), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("item_id", String(32), nullable=False),
    Column("username", String(128), nullable=False),
    Column("secret", String(64), nullable=False),  # needed to verify HMACs; never rendered
    Column("signature_headers", JSON, nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("delivery_id", String(32), primary_key=True),
    Column("receiver_id", String(36), nullable=False),
    Column("received", BigInteger, nullable=False),
    Column("source", String(255), nullable=False),
    Column("signature_ok", Boolean, nullable=False),
    Column("job_id", String(40), nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_webhook_deliveries_receiver", "receiver_id", "received"),
)

# -- web tools (issue 7) ----------------------------------------------------------------------------

# A notebook published as a GP service: its parameters and a snapshot of the notebook taken at publish.
webtools = Table(
    "webtools",
    metadata,
    Column("service_name", String(32), primary_key=True),  # also the web tool's item id
    Column("owner", String(128), nullable=False),
    Column("notebook_id", String(32), nullable=False, unique=True),  # one web tool per notebook
    Column("title", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("task_name", String(255), nullable=False),
    Column("access", String(16), nullable=False),  # private | org
    Column("params", JSON, nullable=False),  # {"inputs": [...], "outputs": [...]}
    Column("runtime_id", String(64), nullable=False),
    Column("snapshot_id", String(128), nullable=False),
    Column("snapshot", LargeBinary, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("modified", BigInteger, nullable=False),
    Column("retry_policy", JSON, nullable=True),  # 0012: the retry policy of the tool's jobs
    Index("ix_webtools_owner_created", "owner", "created"),
)

# Which web tool task a job runs, and the GP inputs it was called with (for …/jobs/<id>/inputs/<p>).
webtool_calls = Table(
    "webtool_calls",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("service_name", String(32), nullable=False),
    Column("task_name", String(255), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("created", BigInteger, nullable=False),
    Index("ix_webtool_calls_service", "service_name"),
    Index("ix_webtool_calls_created", "created"),
)

server_config = Table(
    "server_config",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated", BigInteger, nullable=False),
)

# -- logs (issue 16.2) ------------------------------------------------------------------------------

# The ArcGIS logs resource: one row per kept record; ``seq`` orders records of the same millisecond.
log_messages = Table(
    "log_messages",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("time", BigInteger, nullable=False),
    Column("level", Integer, nullable=False),
    Column("source", String(255), nullable=False),
    Column("message", Text, nullable=False),
    Column("machine", String(255), nullable=False),
    Column("process", Integer, nullable=False),
    Column("thread", String(255), nullable=False),
    Column("method_name", String(255), nullable=False),
    Column("job_id", String(40), nullable=False),
    Column("username", String(128), nullable=False),
    Column("runtime", String(64), nullable=False),
    Column("request_id", String(128), nullable=False),
    Index("ix_log_messages_time", "time", "seq"),
    Index("ix_log_messages_job", "job_id", "time"),
)

# logs/settings: logLevel, maxLogFileAge (not server_config: ConfigService replaces that set whole).
log_settings = Table(
    "log_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated", BigInteger, nullable=False),
)

# -- notifications (issue 16.3) ---------------------------------------------------------------------

# Rules of a task or web tool, copied to each job it starts (scope: "task:<id>", "webtool:<name>").
notification_rules = Table(
    "notification_rules",
    metadata,
    Column("scope", String(160), primary_key=True),
    Column("rules", JSON, nullable=False),
    Column("updated", BigInteger, nullable=False),
)

# A job with rules: what the outbox scan looks at, and which rule:event keys it has enqueued already.
notification_watches = Table(
    "notification_watches",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("username", String(128), nullable=False),
    Column("rules", JSON, nullable=False),
    Column("fired", JSON, nullable=False),
    Column("done", Boolean, nullable=False),
    Column("seen", String(64), nullable=False),  # the job's status:revision at the last scan
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    Index("ix_notification_watches_done", "done", "created"),
)

# The outbox: one row per (job, rule, event), the unique key that makes enqueueing idempotent.
notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("delivery_id", String(32), primary_key=True),
    Column("job_id", String(40), nullable=False),
    Column("username", String(128), nullable=False),
    Column("rule_id", String(32), nullable=False),
    Column("rule", JSON, nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False, default=0),  # the job attempt of an attemptFailed; else 0
    UniqueConstraint("job_id", "rule_id", "event", "attempt", name="uq_notification_deliveries_key"),
    Index("ix_notification_deliveries_due", "status", "next_attempt_at"),
)

notification_attempts = Table(
    "notification_attempts",
    metadata,
    Column("delivery_id", String(32), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("at", BigInteger, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("detail", Text, nullable=False),
)

# SMTP settings and the SSRF allow-list, as the admin API stores them.
notification_config = Table(
    "notification_config",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated", BigInteger, nullable=False),
)

# 0016: interactive notebooks (models/interactive.py): each user's Jupyter servers and what is open in them
lab_containers = Table(
    "lab_containers",
    metadata,
    Column("container_id", String(40), primary_key=True),
    Column("username", String(255), nullable=False),
    Column("runtime_id", String(64), nullable=False),
    Column("node", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    # "<username>/<runtime_id>" while the container is live, else NULL: one live server per user and runtime
    Column("live_key", String(320), nullable=True, unique=True),
    Column("address", String(255), nullable=False),
    Column("token", String(128), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("pid_started", Float, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("last_activity", BigInteger, nullable=False),
    Column("ended", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_lab_containers_status", "status"),
)

lab_notebooks = Table(
    "lab_notebooks",
    metadata,
    Column("notebook_id", String(40), primary_key=True),
    Column(
        "container_id",
        String(40),
        ForeignKey("lab_containers.container_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("item_id", String(64), nullable=False),
    Column("username", String(255), nullable=False),
    Column("path", String(255), nullable=False),
    Column("job_id", String(40), nullable=False),
    Column("opened", BigInteger, nullable=False),
    Column("last_activity", BigInteger, nullable=False),
    Column("closed", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_lab_notebooks_container", "container_id", "closed"),
    Index("ix_lab_notebooks_open", "closed", "opened"),
)
