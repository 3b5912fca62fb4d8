"""Configuration, read once at the edge (CLI flags and environment) into a frozen object.

``Settings`` is a frozen dataclass of frozen groups: ``settings.server.port``, ``settings.pool.workers``…
Each field is declared once, in its group, with its default and its environment variable:
``setting(default, "NBJOBS_…")``, or ``None`` for a field no variable sets. ``FIELDS`` is that table read
back (field name → group, environment variable, parser). Field names are unique across the groups, so
``load_settings`` and ``Settings.with_overrides`` take them flat (``workers=1``), and refuse a name that
is not a field. Nothing here reads the environment or the machine at import time: the one computed
default (``workers``: the CPU count) is computed when settings are built.
"""

from __future__ import annotations

import difflib
import json
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from nbjobs.errors import ConfigurationError

MIN_CLEAN_AGE_HOURS = 6  # ArcGIS: asyncJobsCleanAgeHours has a minimum of 6.

_T = TypeVar("_T")


def setting(default: _T, env: str | None) -> _T:
    """A settings field: its default and the environment variable setting it (None: none does)."""
    return field(default=default, metadata={"env": env})


def computed_setting(factory: Callable[[], _T], env: str | None) -> _T:
    """A settings field whose default ``factory()`` computes each time settings are built."""
    return field(default_factory=factory, metadata={"env": env})


def _cpu_count() -> int:
    return os.cpu_count() or 1


# The table: one group per concern, each field with its default and environment variable.


@dataclass(frozen=True)
class ServerSettings:
    """The HTTP server: where it listens, under which path, with which certificate, as which URL."""

    host: str = setting("127.0.0.1", "NBJOBS_HOST")
    port: int = setting(8443, "NBJOBS_PORT")
    context: str = setting("arcgis", "NBJOBS_CONTEXT")  # the first path segment: /arcgis/admin…
    cert_file: Path | None = setting(None, "NBJOBS_CERT_FILE")  # None: a self-signed one kept in data_dir
    key_file: Path | None = setting(None, "NBJOBS_KEY_FILE")
    insecure_http: bool = setting(False, "NBJOBS_INSECURE_HTTP")
    # e.g. https://nb.example.com/arcgis when behind a proxy; empty: from the request
    public_url: str = setting("", "NBJOBS_PUBLIC_URL")
    # which ArcGIS Enterprise the portal presents itself as to clients: "" (classic: a notebook server
    # federated with a portal) or "kubernetes" (ArcGIS Enterprise on Kubernetes 12.0: the arcgis
    # client then takes its Kubernetes paths, gis.admin.notebooks); the API answers both either way
    portal_deployment: str = setting("", "NBJOBS_PORTAL_DEPLOYMENT")
    # the job streams (docs/api.md): a comment line this often keeps proxies from closing an idle one,
    # and the caller's token is checked again each time
    stream_heartbeat_seconds: float = setting(15.0, "NBJOBS_STREAM_HEARTBEAT_SECONDS")
    # a stream open this long is closed; its client reconnects with Last-Event-ID and misses nothing
    stream_max_seconds: float = setting(3600.0, "NBJOBS_STREAM_MAX_SECONDS")


@dataclass(frozen=True)
class StoreSettings:
    """Where the data lives: the data directory (job scratch space, certificates) and the database."""

    data_dir: Path = setting(Path("var"), "NBJOBS_DATA_DIR")
    database_url: str = setting("", "NBJOBS_DATABASE_URL")  # empty: SQLite file under data_dir

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Users paste libpq URLs; SQLAlchemy wants the driver spelled out.
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{(self.data_dir / 'nbjobs.db').resolve()}"


@dataclass(frozen=True)
class AccountSettings:
    """The administrator, tokens, and the sign-in lockout (per server process): failures in a window
    lock the name / address for a while."""

    admin_user: str = setting("admin", "NBJOBS_ADMIN_USER")
    admin_password: str = setting("", "NBJOBS_ADMIN_PASSWORD")  # empty: generated, printed once (first start)
    token_minutes: int = setting(60, "NBJOBS_TOKEN_MINUTES")
    max_token_minutes: int = setting(14 * 24 * 60, "NBJOBS_MAX_TOKEN_MINUTES")
    login_max_failures: int = setting(10, "NBJOBS_LOGIN_MAX_FAILURES")  # per username; 0 = no limit
    # per client address; 0 = no limit
    login_max_failures_per_address: int = setting(50, "NBJOBS_LOGIN_MAX_FAILURES_PER_ADDRESS")
    login_window_seconds: float = setting(900.0, "NBJOBS_LOGIN_WINDOW_SECONDS")
    login_lockout_seconds: float = setting(900.0, "NBJOBS_LOGIN_LOCKOUT_SECONDS")


@dataclass(frozen=True)
class ExecutionSettings:
    """How one job runs: its deadline, its staged stop, its kernel and user, its lease."""

    max_execute_notebook_time_minutes: float = setting(120, "NBJOBS_MAX_EXECUTE_NOTEBOOK_TIME_MINUTES")
    cancel_grace_seconds: float = setting(5.0, "NBJOBS_CANCEL_GRACE_SECONDS")
    kill_grace_seconds: float = setting(3.0, "NBJOBS_KILL_GRACE_SECONDS")
    default_kernel_name: str = setting("python3", None)
    # OS user kernels run as (the server must be root); "" = the server's user
    kernel_user: str = setting("", "NBJOBS_KERNEL_USER")
    # keep <data dir>/jobs/<job>-<attempt> after the job (for debugging)
    keep_job_dirs: bool = setting(False, "NBJOBS_KEEP_JOB_DIRS")
    # The environment kernels start from: the server's own, minus anything nbjobs-specific or secret
    # (load_settings fills it from the environment it reads).
    kernel_env: tuple[tuple[str, str], ...] = setting((), None)
    lease_seconds: float = setting(60.0, "NBJOBS_LEASE_SECONDS")
    heartbeat_seconds: float = setting(10.0, "NBJOBS_HEARTBEAT_SECONDS")
    poll_seconds: float = setting(1.0, "NBJOBS_POLL_SECONDS")


@dataclass(frozen=True)
class PoolSettings:
    """This process's job slots (serve's local pool, or `nbjobs worker`) and its warm kernels."""

    # jobs run at once; 0: none (serve with a broker, or a server that only serves)
    workers: int = computed_setting(_cpu_count, "NBJOBS_WORKERS")
    warm_pool_size: int = setting(2, "NBJOBS_WARM_POOL_SIZE")
    warm_pool_ttl_seconds: float = setting(3600.0, "NBJOBS_WARM_POOL_TTL_SECONDS")
    # kernels of runtimes whose startMethod is fork are forked from a pre-imported template; 0: every
    # kernel is spawned, whatever the runtime says (docs/performance.md, "Fork-started kernels")
    fork_kernels: bool = setting(True, "NBJOBS_FORK_KERNELS")
    # job runners (the process driving each job's kernel) are forked from a runner template that has
    # imported nbclient once; 0: each is a new interpreter (docs/performance.md, "Forked runners")
    fork_runners: bool = setting(True, "NBJOBS_FORK_RUNNERS")
    # on SIGTERM a worker (or serve) lets running jobs finish this long
    drain_seconds: float = setting(600.0, "NBJOBS_DRAIN_SECONDS")


@dataclass(frozen=True)
class LimitSettings:
    """What a request or a user may send and run (docs/limits.md); 0 means no cap where noted."""

    max_upload_bytes: int = setting(100 * 1024 * 1024, "NBJOBS_MAX_UPLOAD_BYTES")
    # any other request body (forms, JSON); also one form field
    max_request_bytes: int = setting(10 * 1024 * 1024, "NBJOBS_MAX_REQUEST_BYTES")
    webhook_max_body_bytes: int = setting(10 * 1024 * 1024, "NBJOBS_WEBHOOK_MAX_BODY_BYTES")
    # per receiver and server process; 0 = no limit
    webhook_rate_per_minute: int = setting(60, "NBJOBS_WEBHOOK_RATE_PER_MINUTE")
    max_cell_output_bytes: int = setting(5 * 1024 * 1024, "NBJOBS_MAX_CELL_OUTPUT_BYTES")
    max_notebook_output_bytes: int = setting(50 * 1024 * 1024, "NBJOBS_MAX_NOTEBOOK_OUTPUT_BYTES")
    # running jobs per user on this server's pool; 0 = no cap
    max_jobs_per_user: int = setting(0, "NBJOBS_MAX_JOBS_PER_USER")
    # jobs per user not yet ended (waiting or running); 0 = no cap
    max_queued_jobs_per_user: int = setting(1000, "NBJOBS_MAX_QUEUED_JOBS_PER_USER")
    max_parameters: int = setting(1000, "NBJOBS_MAX_PARAMETERS")  # names in one job's notebookParameters
    # one job's notebookParameters as compact JSON; 0 = no cap
    max_parameter_bytes: int = setting(16 * 1024 * 1024, "NBJOBS_MAX_PARAMETER_BYTES")
    max_active_tasks: int = setting(20, "NBJOBS_MAX_ACTIVE_TASKS")  # per user, as ArcGIS activeTasksAvailable


@dataclass(frozen=True)
class HousekeepingSettings:
    """The periodic duties: lease reaper, purge of old jobs, scheduled tasks, the heap trim."""

    reaper_interval_seconds: float = setting(15.0, "NBJOBS_REAPER_INTERVAL_SECONDS")
    cleanup_interval_seconds: float = setting(3600.0, None)
    schedule_interval_seconds: float = setting(5.0, "NBJOBS_SCHEDULE_INTERVAL_SECONDS")
    async_jobs_clean_age_hours: int = setting(6, "NBJOBS_ASYNC_JOBS_CLEAN_AGE_HOURS")
    # the process's C heap (nbjobs/heap.py): glibc malloc arenas (0: glibc's default, 8 per core) and
    # how often freed memory is given back to the system (0: never)
    malloc_arenas: int = setting(2, "NBJOBS_MALLOC_ARENAS")
    heap_trim_seconds: float = setting(30.0, "NBJOBS_HEAP_TRIM_SECONDS")


@dataclass(frozen=True)
class BrokerSettings:
    """Scale-out: with a broker URL, serve publishes jobs to Celery and `nbjobs worker` runs them."""

    broker_url: str = setting("", "NBJOBS_BROKER_URL")  # redis://… or amqp://…; empty: the embedded pool
    # re-publish a SUBMITTED job nobody claimed for this long
    redispatch_seconds: float = setting(60.0, "NBJOBS_REDISPATCH_SECONDS")
    # kombu transport options as a JSON object, e.g. {"visibility_timeout": 43200} (Redis); rarely needed
    broker_transport_options: str = setting("", "NBJOBS_BROKER_TRANSPORT_OPTIONS")


@dataclass(frozen=True)
class WebToolSettings:
    """Web tools: how long a synchronous `execute` waits before answering with the job to poll."""

    webtool_execute_wait_seconds: float = setting(30.0, "NBJOBS_WEBTOOL_EXECUTE_WAIT_SECONDS")


@dataclass(frozen=True)
class LoggingSettings:
    """What a process writes to stderr, and how many records wait for the logs resource's store."""

    log_format: str = setting("text", "NBJOBS_LOG_FORMAT")  # text | json (one JSON object per line)
    log_level: str = setting("INFO", "NBJOBS_LOG_LEVEL")  # the process's level (Python names)
    # records queued for the store between flushes (about 1 s); more are dropped and counted
    log_buffer_size: int = setting(10000, "NBJOBS_LOG_BUFFER_SIZE")


@dataclass(frozen=True)
class MetricsSettings:
    """The unauthenticated scrape listener (docs/observability.md); /admin/metrics needs no setting."""

    # serve /metrics without a token on this port (serve and `nbjobs worker`); 0 = off
    metrics_port: int = setting(0, "NBJOBS_METRICS_PORT")
    metrics_host: str = setting("127.0.0.1", "NBJOBS_METRICS_HOST")  # loopback unless opened on purpose


@dataclass(frozen=True)
class NotificationSettings:
    """Notifications of job events: how often the outbox is scanned and sent, timeouts and retries.
    SMTP and the admin's allow-list live in the store (admin API ``notifications/settings``)."""

    notify_interval_seconds: float = setting(1.0, "NBJOBS_NOTIFY_INTERVAL_SECONDS")
    notify_timeout_seconds: float = setting(10.0, "NBJOBS_NOTIFY_TIMEOUT_SECONDS")  # per attempt
    notify_retry_base_seconds: float = setting(10.0, "NBJOBS_NOTIFY_RETRY_BASE_SECONDS")
    notify_retry_max_seconds: float = setting(3600.0, "NBJOBS_NOTIFY_RETRY_MAX_SECONDS")
    notify_retry_window_hours: float = setting(24.0, "NBJOBS_NOTIFY_RETRY_WINDOW_HOURS")
    notify_senders: int = setting(4, "NBJOBS_NOTIFY_SENDERS")  # sender threads
    # hosts / CIDRs a notification URL may reach although private or loopback (comma-separated)
    notify_allow_list: str = setting("", "NBJOBS_NOTIFY_ALLOW_LIST")


@dataclass(frozen=True)
class InteractiveSettings:
    """Interactive notebooks (docs/interactive.md): where JupyterLab comes from and how its servers run."""

    # the Python that has JupyterLab (its own environment, kept out of the server's: see
    # docs/interactive.md); empty: .venv-lab beside the server's environment, else the server's own
    lab_python: str = setting("", "NBJOBS_LAB_PYTHON")
    # the address a Jupyter server binds and advertises: loopback unless API servers on other machines
    # must reach this one (distributed mode)
    lab_host: str = setting("127.0.0.1", "NBJOBS_LAB_HOST")
    lab_start_timeout_seconds: float = setting(120.0, "NBJOBS_LAB_START_TIMEOUT_SECONDS")
    lab_check_seconds: float = setting(5.0, "NBJOBS_LAB_CHECK_SECONDS")  # liveness, stop requests, culling


@dataclass(frozen=True)
class Settings:
    """Every knob nbjobs reads, by group. Nothing below the CLI looks at ``os.environ``."""

    server: ServerSettings = field(default_factory=ServerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    accounts: AccountSettings = field(default_factory=AccountSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    pool: PoolSettings = field(default_factory=PoolSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    housekeeping: HousekeepingSettings = field(default_factory=HousekeepingSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    webtools: WebToolSettings = field(default_factory=WebToolSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    interactive: InteractiveSettings = field(default_factory=InteractiveSettings)

    def validate(self) -> Settings:
        """Return self, or raise ConfigurationError naming the first bad value."""
        accounts, broker = self.accounts, self.broker
        clean_age_hours = self.housekeeping.async_jobs_clean_age_hours
        if clean_age_hours < MIN_CLEAN_AGE_HOURS:
            raise ConfigurationError(
                f"asyncJobsCleanAgeHours must be at least {MIN_CLEAN_AGE_HOURS}, got {clean_age_hours}"
            )
        if self.pool.workers < 0:
            raise ConfigurationError(f"workers must be 0 or more, got {self.pool.workers}")
        if self.execution.max_execute_notebook_time_minutes <= 0:
            raise ConfigurationError("maxExecuteNotebookTimeMinutes must be a positive number of minutes")
        if min(accounts.login_max_failures, accounts.login_max_failures_per_address) < 0:
            raise ConfigurationError("login max failures must be 0 (no limit) or more")
        if accounts.login_window_seconds <= 0 or accounts.login_lockout_seconds <= 0:
            raise ConfigurationError("login window and lockout must be positive numbers of seconds")
        for name in _NON_NEGATIVE:
            if self.value_of(name) < 0:
                raise ConfigurationError(f"{name} must be 0 or more, got {self.value_of(name)}")
        for name in ("max_upload_bytes", "max_request_bytes"):
            if self.value_of(name) <= 0:
                raise ConfigurationError(f"{name} must be a positive number, got {self.value_of(name)}")
        for name in (*_NOTIFY_POSITIVE, "lab_start_timeout_seconds", "lab_check_seconds"):
            if self.value_of(name) <= 0:
                raise ConfigurationError(f"{name} must be a positive number, got {self.value_of(name)}")
        if broker.broker_transport_options:
            try:
                options = json.loads(broker.broker_transport_options)
            except ValueError as exc:
                raise ConfigurationError(f"NBJOBS_BROKER_TRANSPORT_OPTIONS is not JSON: {exc}") from exc
            if not isinstance(options, dict):
                raise ConfigurationError("NBJOBS_BROKER_TRANSPORT_OPTIONS must be a JSON object")
        logs = self.logging
        deployment = self.server.portal_deployment
        if deployment not in ("", "kubernetes"):
            raise ConfigurationError(f"NBJOBS_PORTAL_DEPLOYMENT must be empty or kubernetes: {deployment!r}")
        if logs.log_format not in ("text", "json"):
            raise ConfigurationError(f"NBJOBS_LOG_FORMAT must be text or json, got {logs.log_format!r}")
        if logs.log_level.upper() not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
            raise ConfigurationError(
                f"NBJOBS_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {logs.log_level!r}"
            )
        if logs.log_buffer_size <= 0:
            raise ConfigurationError(f"log_buffer_size must be a positive number, got {logs.log_buffer_size}")
        if not 0 <= self.metrics.metrics_port <= 65535:
            raise ConfigurationError(
                f"NBJOBS_METRICS_PORT must be 0 (off) to 65535, got {self.metrics.metrics_port}"
            )
        context = self.server.context
        if not context or "/" in context:
            raise ConfigurationError(f"context must be one path segment, got {context!r}")
        return self

    def value_of(self, name: str) -> Any:
        """The value of the field ``name`` (a flat name, as ``load_settings`` takes it), in its group."""
        return getattr(getattr(self, _field(name).group), name)

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with the non-None ``changes`` (flat field names) applied; ConfigurationError naming a
        name that is not a field."""
        by_group = _by_group(changes)
        return replace(self, **{group: replace(getattr(self, group), **by) for group, by in by_group.items()})


@dataclass(frozen=True)
class SettingField:
    """One row of the table: a field, its group, and the environment variable setting it (if any)."""

    group: str
    name: str
    env: str | None  # None: only a flag or code sets it
    parser: Callable[[str], object] | None  # the variable's text → the value; None without a variable

    def parse(self, raw: str) -> object:
        """The value the environment variable's text ``raw`` gives; ConfigurationError if none."""
        assert self.parser is not None, f"{self.name} has no environment variable"
        try:
            return self.parser(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{self.env}={raw!r} is not a valid {self.parser.__name__}") from exc


def _flag(raw: str) -> bool:
    return raw.strip().lower() in {"1", "true", "yes", "on"}


_PARSERS: dict[object, Callable[[str], object]] = {str: str, int: int, float: float, bool: _flag, Path: Path}


def _parser_for(hint: object) -> Callable[[str], object]:
    """The parser for a field's resolved type (``X | None`` parses as ``X``)."""
    if isinstance(hint, types.UnionType):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    try:
        return _PARSERS[hint]
    except KeyError:
        raise TypeError(f"no parser for settings of type {hint!r}") from None


_GROUPS: Mapping[str, type] = types.MappingProxyType(typing.get_type_hints(Settings))  # name → group class


def _table() -> dict[str, SettingField]:
    rows: dict[str, SettingField] = {}
    for group, group_type in _GROUPS.items():
        hints = typing.get_type_hints(group_type)
        for f in fields(group_type):
            if "env" not in f.metadata:
                raise TypeError(f"{group_type.__name__}.{f.name}: declare it with setting()")
            if f.name in rows:
                raise TypeError(f"{f.name} is in both {rows[f.name].group} and {group}")
            env = f.metadata["env"]
            parser = None if env is None else _parser_for(hints[f.name])
            rows[f.name] = SettingField(group, f.name, env, parser)
    return rows


FIELDS: Mapping[str, SettingField] = types.MappingProxyType(_table())
"""Every settings field by its (flat, unique) name: its group and its environment variable."""

_NOTIFY_POSITIVE = (
    "notify_interval_seconds",
    "notify_timeout_seconds",
    "notify_retry_base_seconds",
    "notify_retry_max_seconds",
    "notify_retry_window_hours",
    "notify_senders",
)
_NON_NEGATIVE = (
    "max_jobs_per_user",
    "malloc_arenas",
    "heap_trim_seconds",
    "max_queued_jobs_per_user",
    "max_parameters",
    "max_parameter_bytes",
    "max_cell_output_bytes",
    "max_notebook_output_bytes",
    "webhook_max_body_bytes",
)


def env_var_of(name: str) -> str | None:
    """The environment variable setting the field ``name``, or None when no variable does."""
    return _field(name).env


def _field(name: str) -> SettingField:
    row = FIELDS.get(name)
    if row is None:
        close = difflib.get_close_matches(name, FIELDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(f"unknown setting {name!r}{hint}")
    return row


def _by_group(values: Mapping[str, object]) -> dict[str, dict[str, Any]]:
    """The non-None ``values`` by group; ConfigurationError for a name that is no field (even if None)."""
    by_group: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        row = _field(name)
        if value is not None:
            by_group.setdefault(row.group, {})[name] = value
    return by_group


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from an environment mapping, then explicit overrides (CLI flags) on top.

    ``overrides`` are flat field names; None means "not given". A name that is not a field is a
    ConfigurationError, as is an environment variable whose value does not parse."""
    environ = os.environ if environ is None else environ
    _by_group(overrides)  # unknown names fail before anything is read
    values: dict[str, object] = {}
    for row in FIELDS.values():
        raw = None if row.env is None else environ.get(row.env)
        if raw is not None and raw != "":
            values[row.name] = row.parse(raw)
    values["kernel_env"] = tuple(sorted((k, v) for k, v in environ.items() if not _is_secret(k)))
    values.update({name: value for name, value in overrides.items() if value is not None})
    groups = {group: _GROUPS[group](**by_name) for group, by_name in _by_group(values).items()}
    settings = Settings(**groups).validate()
    # Runners and kernels work in other directories: a relative data dir would point elsewhere there.
    return settings.with_overrides(data_dir=settings.store.data_dir.expanduser().resolve())


_SECRET_MARKERS = ("PASSWORD", "SECRET", "TOKEN", "CREDENTIAL", "PRIVATE_KEY", "DATABASE_URL", "BROKER_URL")


def _is_secret(name: str) -> bool:
    upper = name.upper()
    return upper.startswith("NBJOBS_") or any(marker in upper for marker in _SECRET_MARKERS)
