"""Configuration, read once at the edge (CLI flags and environment) into a frozen object."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from nbjobs.errors import ConfigurationError

MIN_CLEAN_AGE_HOURS = 6  # ArcGIS: asyncJobsCleanAgeHours has a minimum of 6.


@dataclass(frozen=True)
class Settings:
    """Every knob nbjobs reads. Nothing below the CLI looks at ``os.environ``."""

    data_dir: Path = Path("var")
    database_url: str = ""  # empty: SQLite file under data_dir
    host: str = "127.0.0.1"
    port: int = 8443
    context: str = "arcgis"
    workers: int = os.cpu_count() or 1
    # Execution
    max_execute_notebook_time_minutes: float = 120
    cancel_grace_seconds: float = 5.0
    kill_grace_seconds: float = 3.0
    max_cell_output_bytes: int = 5 * 1024 * 1024
    max_notebook_output_bytes: int = 50 * 1024 * 1024
    default_kernel_name: str = "python3"
    warm_pool_size: int = 2
    max_jobs_per_user: int = 0  # running jobs per user on this server's pool; 0 = no cap
    max_queued_jobs_per_user: int = 1000  # jobs per user not yet ended (waiting or running); 0 = no cap
    max_parameters: int = 1000  # names in one job's notebookParameters; 0 = no cap
    max_parameter_bytes: int = 16 * 1024 * 1024  # one job's notebookParameters as compact JSON; 0 = no cap
    kernel_user: str = ""  # OS user kernels run as (the server must be root); "" = the server's user
    keep_job_dirs: bool = False  # keep <data dir>/jobs/<job>-<attempt> after the job (for debugging)
    warm_pool_ttl_seconds: float = 3600.0
    # The environment kernels start from: the server's own, minus anything nbjobs-specific or secret.
    kernel_env: tuple[tuple[str, str], ...] = ()
    # Leases and housekeeping
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 10.0
    poll_seconds: float = 1.0
    reaper_interval_seconds: float = 15.0
    async_jobs_clean_age_hours: int = 6
    cleanup_interval_seconds: float = 3600.0
    # Web server, users and tokens (issue 3)
    cert_file: Path | None = None  # None: a self-signed certificate kept in data_dir
    key_file: Path | None = None
    insecure_http: bool = False
    public_url: str = ""  # e.g. https://nb.example.com/arcgis when behind a proxy; empty: from the request
    admin_user: str = "admin"
    admin_password: str = ""  # empty: generated and printed once on first start
    token_minutes: int = 60
    max_token_minutes: int = 14 * 24 * 60
    max_upload_bytes: int = 100 * 1024 * 1024
    max_request_bytes: int = 10 * 1024 * 1024  # any other request body (forms, JSON); also one form field
    # Sign-in lockout (per server process): failures in a window lock the name / address for a while
    login_max_failures: int = 10  # per username; 0 = no limit
    login_max_failures_per_address: int = 50  # per client address; 0 = no limit
    login_window_seconds: float = 900.0
    login_lockout_seconds: float = 900.0
    # Scheduled tasks and webhook receivers (issue 6)
    schedule_interval_seconds: float = 5.0
    max_active_tasks: int = 20  # per user, as ArcGIS (activeTasksAvailable)
    webhook_max_body_bytes: int = 10 * 1024 * 1024
    webhook_rate_per_minute: int = 60  # per receiver and server process; 0 = no limit
    # Scale-out (issue 5): with a broker URL, serve publishes jobs to Celery and `nbjobs worker` runs them
    broker_url: str = ""  # redis://… or amqp://…; empty: the embedded local pool
    redispatch_seconds: float = 60.0  # re-publish a SUBMITTED job nobody claimed for this long
    drain_seconds: float = 600.0  # on SIGTERM a worker (or serve) lets running jobs finish this long
    # kombu transport options as a JSON object, e.g. {"visibility_timeout": 43200} (Redis); rarely needed
    broker_transport_options: str = ""
    # Web tools (issue 7): how long a synchronous `execute` waits before answering with the job to poll
    webtool_execute_wait_seconds: float = 30.0

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Users paste libpq URLs; SQLAlchemy wants the driver spelled out.
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{(self.data_dir / 'nbjobs.db').resolve()}"

    def validate(self) -> Settings:
        """Return self, or raise ConfigurationError naming the first bad value."""
        if self.async_jobs_clean_age_hours < MIN_CLEAN_AGE_HOURS:
            raise ConfigurationError(
                f"asyncJobsCleanAgeHours must be at least {MIN_CLEAN_AGE_HOURS}, "
                f"got {self.async_jobs_clean_age_hours}"
            )
        if self.workers < 0:
            raise ConfigurationError(f"workers must be 0 or more, got {self.workers}")
        if self.max_execute_notebook_time_minutes <= 0:
            raise ConfigurationError("maxExecuteNotebookTimeMinutes must be a positive number of minutes")
        if min(self.login_max_failures, self.login_max_failures_per_address) < 0:
            raise ConfigurationError("login max failures must be 0 (no limit) or more")
        if self.login_window_seconds <= 0 or self.login_lockout_seconds <= 0:
            raise ConfigurationError("login window and lockout must be positive numbers of seconds")
        for name in _NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("max_upload_bytes", "max_request_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be a positive number, got {getattr(self, name)}")
        if self.broker_transport_options:
            try:
                options = json.loads(self.broker_transport_options)
            except ValueError as exc:
                raise ConfigurationError(f"NBJOBS_BROKER_TRANSPORT_OPTIONS is not JSON: {exc}") from exc
            if not isinstance(options, dict):
                raise ConfigurationError("NBJOBS_BROKER_TRANSPORT_OPTIONS must be a JSON object")
        if not self.context or "/" in self.context:
            raise ConfigurationError(f"context must be one path segment, got {self.context!r}")
        return self

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with the non-None ``changes`` applied."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_NON_NEGATIVE = (
    "max_jobs_per_user",
    "max_queued_jobs_per_user",
    "max_parameters",
    "max_parameter_bytes",
    "max_cell_output_bytes",
    "max_notebook_output_bytes",
    "webhook_max_body_bytes",
)

_ENV = {
    "NBJOBS_DATA_DIR": ("data_dir", Path),
    "NBJOBS_DATABASE_URL": ("database_url", str),
    "NBJOBS_HOST": ("host", str),
    "NBJOBS_PORT": ("port", int),
    "NBJOBS_CONTEXT": ("context", str),
    "NBJOBS_WORKERS": ("workers", int),
    "NBJOBS_MAX_EXECUTE_NOTEBOOK_TIME_MINUTES": ("max_execute_notebook_time_minutes", float),
    "NBJOBS_CANCEL_GRACE_SECONDS": ("cancel_grace_seconds", float),
    "NBJOBS_KILL_GRACE_SECONDS": ("kill_grace_seconds", float),
    "NBJOBS_LEASE_SECONDS": ("lease_seconds", float),
    "NBJOBS_POLL_SECONDS": ("poll_seconds", float),
    "NBJOBS_WARM_POOL_SIZE": ("warm_pool_size", int),
    "NBJOBS_MAX_JOBS_PER_USER": ("max_jobs_per_user", int),
    "NBJOBS_MAX_QUEUED_JOBS_PER_USER": ("max_queued_jobs_per_user", int),
    "NBJOBS_MAX_PARAMETERS": ("max_parameters", int),
    "NBJOBS_MAX_PARAMETER_BYTES": ("max_parameter_bytes", int),
    "NBJOBS_KERNEL_USER": ("kernel_user", str),
    "NBJOBS_KEEP_JOB_DIRS": ("keep_job_dirs", lambda v: v.strip().lower() in {"1", "true", "yes", "on"}),
    "NBJOBS_WARM_POOL_TTL_SECONDS": ("warm_pool_ttl_seconds", float),
    "NBJOBS_REAPER_INTERVAL_SECONDS": ("reaper_interval_seconds", float),
    "NBJOBS_HEARTBEAT_SECONDS": ("heartbeat_seconds", float),
    "NBJOBS_ASYNC_JOBS_CLEAN_AGE_HOURS": ("async_jobs_clean_age_hours", int),
    "NBJOBS_MAX_CELL_OUTPUT_BYTES": ("max_cell_output_bytes", int),
    "NBJOBS_MAX_NOTEBOOK_OUTPUT_BYTES": ("max_notebook_output_bytes", int),
    "NBJOBS_CERT_FILE": ("cert_file", Path),
    "NBJOBS_KEY_FILE": ("key_file", Path),
    "NBJOBS_INSECURE_HTTP": ("insecure_http", lambda v: v.strip().lower() in {"1", "true", "yes", "on"}),
    "NBJOBS_PUBLIC_URL": ("public_url", str),
    "NBJOBS_ADMIN_USER": ("admin_user", str),
    "NBJOBS_ADMIN_PASSWORD": ("admin_password", str),
    "NBJOBS_TOKEN_MINUTES": ("token_minutes", int),
    "NBJOBS_MAX_TOKEN_MINUTES": ("max_token_minutes", int),
    "NBJOBS_MAX_UPLOAD_BYTES": ("max_upload_bytes", int),
    "NBJOBS_MAX_REQUEST_BYTES": ("max_request_bytes", int),
    "NBJOBS_LOGIN_MAX_FAILURES": ("login_max_failures", int),
    "NBJOBS_LOGIN_MAX_FAILURES_PER_ADDRESS": ("login_max_failures_per_address", int),
    "NBJOBS_LOGIN_WINDOW_SECONDS": ("login_window_seconds", float),
    "NBJOBS_LOGIN_LOCKOUT_SECONDS": ("login_lockout_seconds", float),
    "NBJOBS_SCHEDULE_INTERVAL_SECONDS": ("schedule_interval_seconds", float),
    "NBJOBS_MAX_ACTIVE_TASKS": ("max_active_tasks", int),
    "NBJOBS_WEBHOOK_MAX_BODY_BYTES": ("webhook_max_body_bytes", int),
    "NBJOBS_WEBHOOK_RATE_PER_MINUTE": ("webhook_rate_per_minute", int),
    "NBJOBS_BROKER_URL": ("broker_url", str),
    "NBJOBS_REDISPATCH_SECONDS": ("redispatch_seconds", float),
    "NBJOBS_DRAIN_SECONDS": ("drain_seconds", float),
    "NBJOBS_BROKER_TRANSPORT_OPTIONS": ("broker_transport_options", str),
    "NBJOBS_WEBTOOL_EXECUTE_WAIT_SECONDS": ("webtool_execute_wait_seconds", float),
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from an environment mapping, then explicit overrides (CLI flags) on top."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for var, (name, kind) in _ENV.items():
        raw = environ.get(var)
        if raw is None or raw == "":
            continue
        try:
            values[name] = kind(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{var}={raw!r} is not a valid {kind.__name__}") from exc
    values["kernel_env"] = tuple(sorted((k, v) for k, v in environ.items() if not _is_secret(k)))
    known = {f.name for f in fields(Settings)}
    values.update({k: v for k, v in overrides.items() if v is not None and k in known})
    settings = Settings(**values).validate()  # type: ignore[arg-type]
    # Runners and kernels work in other directories: a relative data dir would point elsewhere there.
    return replace(settings, data_dir=settings.data_dir.expanduser().resolve())


_SECRET_MARKERS = ("PASSWORD", "SECRET", "TOKEN", "CREDENTIAL", "PRIVATE_KEY", "DATABASE_URL", "BROKER_URL")


def _is_secret(name: str) -> bool:
    upper = name.upper()
    return upper.startswith("NBJOBS_") or any(marker in upper for marker in _SECRET_MARKERS)
