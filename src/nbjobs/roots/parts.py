"""Parts that more than one composition root wires the same way: the runtime registry, the token
service, the supervisor of a process that runs jobs, and the worker-id prefix of a process."""

from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy import Engine

from nbjobs.clock import Clock
from nbjobs.execution.supervisor import Supervisor
from nbjobs.heap import Heap
from nbjobs.models.events import JobEvents
from nbjobs.models.portal_stores import UserStore
from nbjobs.service.accounts.credentials import JobCredentialIssuer
from nbjobs.service.accounts.tokens import TokenService
from nbjobs.service.accounts.users import UserService
from nbjobs.service.housekeeping import Duty
from nbjobs.service.runtimes.environments import SubprocessEnvironments
from nbjobs.service.runtimes.kernelspecs import kernel_dir
from nbjobs.service.runtimes.registry import RuntimeService
from nbjobs.service.system.config import ConfigService
from nbjobs.settings import Settings
from nbjobs.store.jobs import SqlJobStore
from nbjobs.store.runtimes import SqlRuntimeStore
from nbjobs.store.users import SqlTokenStore


def process_prefix() -> str:
    """``<host>/<pid>-<boot>``: every worker id of this process starts with it (recovery tells a live
    process's jobs from those of an earlier one on the same host by it)."""
    return f"{socket.gethostname()}/{os.getpid()}-{uuid.uuid4().hex[:8]}"


def runtime_registry(engine: Engine, settings: Settings, clock: Clock) -> RuntimeService:
    return RuntimeService(
        SqlRuntimeStore(engine), clock, kernels=kernel_dir(settings), environments=SubprocessEnvironments()
    )


def token_service(engine: Engine, users: UserStore, settings: Settings, clock: Clock) -> TokenService:
    return TokenService(
        SqlTokenStore(engine),
        users,
        clock,
        default_minutes=settings.accounts.token_minutes,
        max_minutes=settings.accounts.max_token_minutes,
    )


def job_supervisor(
    store: SqlJobStore,
    settings: Settings,
    clock: Clock,
    *,
    runtimes: RuntimeService,
    users: UserService,
    tokens: TokenService,
    config: ConfigService,
    events: JobEvents,
) -> Supervisor:
    """The supervisor of a process that runs jobs (`serve` without a broker, `worker`): runtime limits
    as registered now, the owner's per-job token, maxExecuteNotebookTimeMinutes as configured now, and
    each runtime's kernel start state (fork | spawn | fallback) recorded for the runtime admin API."""
    return Supervisor(
        store,
        settings,
        clock,
        runtimes=runtimes.find,
        credentials=JobCredentialIssuer(users, tokens, settings),
        max_minutes=config.max_execute_minutes,
        events=events,
        start_status=runtimes.record_start_status,
    )


def heap_duties(settings: Settings) -> list[Duty]:
    """Give freed C-heap memory back to the system every NBJOBS_HEAP_TRIM_SECONDS (nbjobs/heap.py): the
    server and the worker alike; none where the C library cannot (or the setting is 0)."""
    heap, every = Heap(), settings.housekeeping.heap_trim_seconds
    return [Duty("trim-heap", every, heap.trim)] if heap.supported and every > 0 else []
