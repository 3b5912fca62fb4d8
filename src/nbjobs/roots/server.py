"""The composition root: builds every part of nbjobs from Settings, in one place, and runs its loops."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field

from nbjobs.clock import Clock, now_ms
from nbjobs.dispatch.base import Dispatcher
from nbjobs.dispatch.celery.reconciler import Reconciler
from nbjobs.dispatch.local import LocalPool
from nbjobs.execution.limits import detect_backend
from nbjobs.execution.supervisor import Supervisor
from nbjobs.models.jobs import Job, JobStatus
from nbjobs.service.accounts.credentials import JobCredentialIssuer
from nbjobs.service.accounts.login_limit import LoginLimiter
from nbjobs.service.accounts.tokens import TokenService
from nbjobs.service.accounts.users import UserService
from nbjobs.service.automation.scheduler import NotebookLauncher, Scheduler
from nbjobs.service.automation.tasks import TaskService
from nbjobs.service.automation.webhooks import WebhookService
from nbjobs.service.content.items import ItemService
from nbjobs.service.jobs.execute_notebook import NotebookExecution
from nbjobs.service.jobs.recovery import end_lost, reap_expired, recover_host
from nbjobs.service.jobs.service import JobService
from nbjobs.service.runtimes.environments import SubprocessEnvironments
from nbjobs.service.runtimes.kernelspecs import kernel_dir
from nbjobs.service.runtimes.registry import RuntimeService
from nbjobs.service.system.config import ConfigService
from nbjobs.service.webtools.service import WebToolService
from nbjobs.settings import Settings
from nbjobs.store.config import SqlConfigStore
from nbjobs.store.engine import open_store
from nbjobs.store.items import SqlItemStore
from nbjobs.store.jobs import SqlJobStore
from nbjobs.store.notify import notify_cancel
from nbjobs.store.outbox import SqlOutbox
from nbjobs.store.runtimes import SqlRuntimeStore
from nbjobs.store.tasks import SqlTaskStore
from nbjobs.store.users import SqlTokenStore, SqlUserStore
from nbjobs.store.webhooks import SqlReceiverStore
from nbjobs.store.webtools import SqlWebToolStore
from nbjobs.store.workers import SqlWorkerStore

log = logging.getLogger(__name__)


@dataclass
class NbJobs:
    """One running nbjobs: store, service, worker pool and housekeeping. ``start``/``stop`` bracket it."""

    settings: Settings
    store: SqlJobStore
    service: JobService
    pool: LocalPool
    clock: Clock
    host_prefix: str
    boot_prefix: str
    users: UserService
    tokens: TokenService
    items: ItemService
    notebooks: NotebookExecution
    tasks: TaskService
    scheduler: Scheduler
    webhooks: WebhookService
    runtimes: RuntimeService
    supervisor: Supervisor
    dispatcher: Dispatcher  # the local pool, or Celery when a broker URL is set
    workers: SqlWorkerStore
    webtools: WebToolService  # notebooks published as GP services (issue 7)
    config: ConfigService  # notebooks/configuration and system/properties, with stored updates
    reconciler: Reconciler | None = None  # broker mode only: re-publishes what the broker lost
    _stop: threading.Event = field(default_factory=threading.Event)
    _housekeeper: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = now_ms) -> NbJobs:
        store = open_store(settings)
        host_prefix = socket.gethostname()
        boot_prefix = f"{host_prefix}/{os.getpid()}-{uuid.uuid4().hex[:8]}"
        runtimes = RuntimeService(
            SqlRuntimeStore(store.engine),
            clock,
            kernels=kernel_dir(settings),
            environments=SubprocessEnvironments(),
        )
        runtimes.ensure_default()
        runtimes.install_kernelspecs()
        user_store = SqlUserStore(store.engine)
        limiter = LoginLimiter(
            clock,
            max_failures=settings.login_max_failures,
            max_failures_per_address=settings.login_max_failures_per_address,
            window_seconds=settings.login_window_seconds,
            lockout_seconds=settings.login_lockout_seconds,
        )
        users = UserService(user_store, clock, limiter=limiter)
        tokens = TokenService(
            SqlTokenStore(store.engine),
            user_store,
            clock,
            default_minutes=settings.token_minutes,
            max_minutes=settings.max_token_minutes,
        )
        config = ConfigService(settings, SqlConfigStore(store.engine), clock)
        limits = detect_backend()
        log.info("resource limits enforced with %s", limits.name)
        supervisor = Supervisor(
            store,
            settings,
            clock,
            runtimes=runtimes.find,
            limits=limits,
            credentials=JobCredentialIssuer(users, tokens, settings),
            max_minutes=config.max_execute_minutes,
        )
        pool = LocalPool(store, settings, clock, boot_prefix, supervisor)
        dispatcher: Dispatcher = pool
        reconciler = None
        if settings.broker_url:  # serve publishes to the broker and runs no local workers
            from nbjobs.dispatch.celery.publisher import CeleryDispatcher, make_celery

            outbox = SqlOutbox(store.engine)
            dispatcher = CeleryDispatcher(make_celery(settings), outbox, clock)
            reconciler = Reconciler(outbox, dispatcher, clock, settings.redispatch_seconds)

        def on_cancel(job: Job) -> None:
            supervisor.wake(job.job_id)  # a job of this process's pool: look now
            notify_cancel(store.engine, job.job_id)  # jobs on other machines (PostgreSQL)

        service = JobService(
            store,
            settings,
            clock,
            on_submit=dispatcher.notify,
            on_cancel=on_cancel,
            clean_age_hours=config.clean_age_hours,
        )
        item_store = SqlItemStore(store.engine)
        items = ItemService(item_store, clock, max_bytes=settings.max_upload_bytes)
        notebooks = NotebookExecution(service, items, item_store, clock, runtimes)
        task_store = SqlTaskStore(store.engine)
        tasks = TaskService(task_store, items, users, clock, max_active=settings.max_active_tasks)
        scheduler = Scheduler(task_store, store, NotebookLauncher(users, notebooks), clock)
        webhooks = WebhookService(
            SqlReceiverStore(store.engine),
            items,
            users,
            tokens,
            notebooks,
            clock,
            max_body_bytes=settings.webhook_max_body_bytes,
            rate_per_minute=settings.webhook_rate_per_minute,
        )
        return cls(
            settings,
            store,
            service,
            pool,
            clock,
            host_prefix,
            boot_prefix,
            users=users,
            tokens=tokens,
            items=items,
            notebooks=notebooks,
            tasks=tasks,
            scheduler=scheduler,
            webhooks=webhooks,
            runtimes=runtimes,
            supervisor=supervisor,
            dispatcher=dispatcher,
            workers=SqlWorkerStore(store.engine),
            reconciler=reconciler,
            webtools=WebToolService(SqlWebToolStore(store.engine), items, service, clock, runtimes),
            config=config,
        )

    def recover(self) -> int:
        """End what an earlier run of this server on this host left EXECUTING; returns how many."""
        # Jobs of `nbjobs worker` processes alive on this host are theirs, not leftovers.
        since = self.clock() - int(self.settings.lease_seconds * 1000)
        live = [w.worker_id for w in self.workers.live(since)]
        changed = recover_host(self.store, self.host_prefix + "/", (self.boot_prefix, *live), self.clock)
        for job in changed:
            log.warning("recovered job %s: %s", job.job_id, job.status)
            if job.status == JobStatus.SUBMITTED:
                self.dispatcher.notify(job)
        return len(changed)

    def housekeeping(self) -> None:
        """One round of the background duties: reap lost leases, purge old ended jobs, fire due tasks."""
        for job in reap_expired(self.store, self.clock):
            if job.status == JobStatus.SUBMITTED:  # re-queued by its retry_on_worker_lost policy
                self.dispatcher.notify(job)
        self.service.purge_expired()
        self.webtools.purge_calls(self.config.clean_age_hours() * 2 * 3_600_000)  # jobs gone
        self.scheduler.tick()
        if self.reconciler is not None:
            self.reconciler.tick()

    def start(self) -> None:
        self.recover()
        self.dispatcher.start()
        self._housekeeper = threading.Thread(
            target=self._housekeeping_loop, name="nbjobs-housekeeper", daemon=True
        )
        self._housekeeper.start()

    def stop(self, grace: float | None = 30.0) -> None:
        """Take no new jobs and let running ones finish for up to ``grace`` seconds (None: no limit);
        end those still running then as lost (or re-queue them, by their policy), kill their runners
        and kernels, and close the store. SUBMITTED jobs stay SUBMITTED for the next start."""
        self._stop.set()
        if grace is not None and self.dispatcher is self.pool and not self.pool.drain(grace):
            self.abandon_running("the server was stopped before the job finished")
            # each supervisor sees its job ended at once (woken) and stops its runner and kernel
            grace = self.settings.poll_seconds + 2 * self.settings.kill_grace_seconds + 5
        self.dispatcher.stop(grace)
        self.store.close()

    def abandon_running(self, message: str) -> list[Job]:
        """End the jobs this process is running as lost (or re-queue them, by their policy)."""
        changed = []
        for job in self.store.running_on(self.boot_prefix + "/"):
            ended = end_lost(self.store, job, self.clock, message)
            self.supervisor.wake(job.job_id)
            if ended is not None:
                log.warning("job %s: %s; now %s", job.job_id, message, ended.status)
                changed.append(ended)
        return changed

    def _housekeeping_loop(self) -> None:
        interval = min(
            self.settings.reaper_interval_seconds,
            self.settings.cleanup_interval_seconds,
            self.settings.schedule_interval_seconds,
        )
        while not self._stop.wait(interval):
            try:
                self.housekeeping()
            except Exception:
                log.exception("housekeeping failed; will retry")
