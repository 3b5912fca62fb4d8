"""The server's composition root: ``Server.from_settings`` wires every part of `nbjobs serve`.

This is one of the two places (with ``roots/worker.py``) that name concrete stores, dispatchers and
pools. ``from_settings`` only opens the database and wires; ``prepare`` does the server's first
writes (the default runtime, kernelspecs, the resource-limit probe); ``start`` recovers what an
earlier run left, then starts dispatching and the housekeeper; ``stop`` drains.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from nbjobs.clock import Clock, now_ms
from nbjobs.dispatch.base import Dispatcher
from nbjobs.dispatch.local import LocalDispatcher
from nbjobs.execution.lab.host import LabHost
from nbjobs.execution.limits import detect_backend
from nbjobs.execution.supervisor import Supervisor
from nbjobs.models.jobs import Job
from nbjobs.models.workers import WorkerRecord
from nbjobs.roots.parts import (
    heap_duties,
    job_supervisor,
    process_prefix,
    runtime_registry,
    token_service,
)
from nbjobs.service.accounts.login_limit import LoginLimiter
from nbjobs.service.accounts.tokens import TokenService
from nbjobs.service.accounts.users import UserService
from nbjobs.service.automation.scheduler import NotebookLauncher, Scheduler
from nbjobs.service.automation.tasks import TaskService
from nbjobs.service.automation.webhooks import WebhookService
from nbjobs.service.content.items import ItemService
from nbjobs.service.content.snapshots import SnapshotService
from nbjobs.service.housekeeping import Duty, Housekeeper
from nbjobs.service.interactive.service import InteractiveService, lab_limits
from nbjobs.service.jobs.execute_notebook import NotebookExecution
from nbjobs.service.jobs.feed import JobFeed
from nbjobs.service.jobs.recovery import Recovery
from nbjobs.service.jobs.service import HOUR_MS, JobService
from nbjobs.service.notifications.events import NotifyPolicy
from nbjobs.service.notifications.service import NotificationService
from nbjobs.service.notifications.targets import AllowList
from nbjobs.service.runtimes.registry import RuntimeService
from nbjobs.service.system.config import ConfigService
from nbjobs.service.system.logs import LogService
from nbjobs.service.system.machines import MachineService
from nbjobs.service.system.metrics import MetricsService
from nbjobs.service.system.statistics import StatisticsService
from nbjobs.service.webtools.service import WebToolService
from nbjobs.settings import Settings
from nbjobs.store.config import SqlConfigStore
from nbjobs.store.containers import SqlContainerStore
from nbjobs.store.engine import open_store
from nbjobs.store.items import SqlItemStore
from nbjobs.store.jobs import SqlJobStore
from nbjobs.store.logs import SqlLogStore
from nbjobs.store.notifications import SqlNotificationStore
from nbjobs.store.notify import notify_cancel
from nbjobs.store.snapshots import SqlSnapshotStore
from nbjobs.store.tasks import SqlTaskStore
from nbjobs.store.usage import SqlUsageStore
from nbjobs.store.users import SqlUserStore
from nbjobs.store.webhooks import SqlReceiverStore
from nbjobs.store.webtools import SqlWebToolStore
from nbjobs.store.workers import SqlWorkerStore
from nbjobs.telemetry.logs import StoreLogHandler
from nbjobs.telemetry.metrics import Metrics, MetricsListener
from nbjobs.web.services import WebServices

log = logging.getLogger(__name__)


def _local_machine(pool: LocalDispatcher, runtimes: RuntimeService) -> WorkerRecord:
    """The embedded pool as the machines view shows it: it runs every enabled runtime."""
    serves = tuple({"id": r.runtime_id, "name": r.name} for r in runtimes.list() if not r.disabled)
    return pool.machine(serves)


@dataclass
class Server:
    """One `nbjobs serve`: its services (``web`` is what the web layer gets), its dispatcher, and
    the embedded worker ``pool`` with its ``supervisor`` (both None in broker mode: jobs run in
    `nbjobs worker` processes then)."""

    settings: Settings
    clock: Clock
    store: SqlJobStore
    service: JobService
    users: UserService
    tokens: TokenService
    items: ItemService
    notebooks: NotebookExecution
    tasks: TaskService
    scheduler: Scheduler
    webhooks: WebhookService
    runtimes: RuntimeService
    webtools: WebToolService
    config: ConfigService
    workers: SqlWorkerStore
    dispatcher: Dispatcher
    pool: LocalDispatcher | None
    supervisor: Supervisor | None
    recovery: Recovery
    housekeeper: Housekeeper
    web: WebServices
    logs: LogService
    log_handler: StoreLogHandler  # feeds the logs resource while started (root logger)
    notifications: NotificationService  # the outbox scan and sender (docs/notifications.md)
    host_prefix: str  # "<host>": every worker id on this machine starts with it
    boot_prefix: str  # "<host>/<pid>-<boot>": the worker ids of this process
    metrics: Metrics  # this process's metrics (/admin/metrics, and NBJOBS_METRICS_PORT when set)
    metrics_listener: MetricsListener | None  # the token-free scrape listener, while started
    interactive: InteractiveService  # users' Jupyter servers (docs/interactive.md)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = now_ms) -> Server:
        store = open_store(settings)
        engine = store.engine
        boot_prefix = process_prefix()
        host_prefix = boot_prefix.split("/", 1)[0]
        lease_ms = int(settings.execution.lease_seconds * 1000)
        metrics = Metrics()
        runtimes = runtime_registry(engine, settings, clock)
        user_store = SqlUserStore(engine)
        limiter = LoginLimiter(
            clock,
            max_failures=settings.accounts.login_max_failures,
            max_failures_per_address=settings.accounts.login_max_failures_per_address,
            window_seconds=settings.accounts.login_window_seconds,
            lockout_seconds=settings.accounts.login_lockout_seconds,
        )
        users = UserService(user_store, clock, limiter=limiter)
        tokens = token_service(engine, user_store, settings, clock)
        config = ConfigService(settings, SqlConfigStore(engine), clock)
        log_store = SqlLogStore(engine)
        log_handler = StoreLogHandler(capacity=settings.logging.log_buffer_size, machine=host_prefix)
        logs = LogService(log_store, clock, started=clock(), on_level=log_handler.set_threshold)
        workers = SqlWorkerStore(engine)

        supervisor: Supervisor | None = None
        containers = SqlContainerStore(engine)
        lab: LabHost | None = None  # the container host: where jobs run (broker mode: the workers)
        pool: LocalDispatcher | None = None
        dispatcher: Dispatcher
        reconcile = None
        local: Callable[[], WorkerRecord] | None = None  # broker mode: the workers report themselves
        if settings.broker.broker_url:  # serve publishes to the broker and runs no jobs itself
            from nbjobs.dispatch.celery.publisher import CeleryDispatcher, make_celery
            from nbjobs.dispatch.celery.reconciler import Reconciler
            from nbjobs.store.outbox import SqlOutbox

            outbox = SqlOutbox(engine)
            celery = CeleryDispatcher(make_celery(settings), outbox, clock)
            reconcile = Reconciler(outbox, celery, clock, settings.broker.redispatch_seconds).tick
            dispatcher = celery
        else:
            supervisor = job_supervisor(
                store,
                settings,
                clock,
                runtimes=runtimes,
                users=users,
                tokens=tokens,
                config=config,
                events=metrics,
            )
            lab = supervisor.lab = LabHost(
                store, containers, settings, clock, node=host_prefix, runtimes=runtimes.find,
                max_containers=lambda: int(config.current()["maxContainersPerNode"]),
            )  # fmt: skip
            dispatcher = pool = LocalDispatcher(store, settings, clock, boot_prefix, supervisor)
            local = functools.partial(_local_machine, pool, runtimes)  # the machines view's one machine
            metrics.watch_pools(supervisor.pool_states)
            metrics.watch_slots(pool.slots)

        def on_cancel(job: Job) -> None:
            if supervisor is not None:
                supervisor.wake(job.job_id)  # a job of this process's pool: look now
            notify_cancel(engine, job.job_id)  # jobs on other machines (PostgreSQL)

        jobs = JobService(
            store,
            settings,
            clock,
            on_submit=dispatcher.notify,
            on_cancel=on_cancel,
            clean_age_hours=config.clean_age_hours,
            events=metrics,
        )
        item_store = SqlItemStore(engine)
        items = ItemService(item_store, clock, max_bytes=settings.limits.max_upload_bytes)
        notify = settings.notifications
        notifications = NotificationService(
            SqlNotificationStore(engine),
            store,
            clock,
            policy=NotifyPolicy.from_settings(notify),
            allow=AllowList.parse(notify.notify_allow_list.split(",")),
            on_outcome=metrics.notification_delivered,
        )
        notebooks = NotebookExecution(jobs, items, item_store, clock, runtimes, notifications=notifications)
        task_store = SqlTaskStore(engine)
        tasks = TaskService(
            task_store,
            items,
            users,
            clock,
            max_active=settings.limits.max_active_tasks,
            notifications=notifications,
        )
        scheduler = Scheduler(task_store, store, NotebookLauncher(users, notebooks), clock)
        webhooks = WebhookService(
            SqlReceiverStore(engine),
            items,
            users,
            tokens,
            notebooks,
            clock,
            max_body_bytes=settings.limits.webhook_max_body_bytes,
            rate_per_minute=settings.limits.webhook_rate_per_minute,
            delivered=metrics.webhook_delivered,
        )
        webtools = WebToolService(
            SqlWebToolStore(engine), items, jobs, clock, runtimes, notifications=notifications
        )
        recovery = Recovery(
            store,
            workers,
            clock,
            lease_ms=lease_ms,
            requeued=dispatcher.notify,
            wake=supervisor.wake if supervisor is not None else lambda job_id: None,
            events=metrics,
        )
        # state at scrape time, from the store: every API replica reports the same numbers
        metrics.watch_jobs(store.active_counts)
        metrics.watch_workers(lambda: len(workers.live(clock() - lease_ms)))

        def schedule() -> None:
            report = scheduler.tick()
            metrics.scheduler_ticked(
                started=report.fired, queued=report.queued, skipped=report.skipped, misfired=report.misfired
            )

        # Today's cadence: one round of every duty at the shortest of the three intervals; the item
        # write-back as often as a runner polls, so an executed notebook reaches its item at once.
        every = min(
            settings.housekeeping.reaper_interval_seconds,
            settings.housekeeping.cleanup_interval_seconds,
            settings.housekeeping.schedule_interval_seconds,
        )
        duties = [
            Duty("lease-reaper", every, recovery.reap_expired),
            Duty("purge-jobs", every, jobs.purge_expired),
            # web tool calls outlive their jobs by one clean age
            Duty(
                "purge-webtool-calls",
                every,
                lambda: webtools.purge_calls(config.clean_age_hours() * 2 * HOUR_MS),
            ),
            Duty("scheduler", every, schedule),
            Duty("item-write-back", settings.execution.poll_seconds, notebooks.sync_item_updates),
            Duty("ship-logs", 1.0, lambda: log_handler.ship(log_store)),  # the logs resource
            Duty("purge-logs", every, logs.purge_expired),  # maxLogFileAge
            Duty("notify-scan", notify.notify_interval_seconds, notifications.scan),
            Duty("notify-send", notify.notify_interval_seconds, notifications.pump),
            Duty(
                "purge-notifications",
                every,
                lambda: notifications.purge(config.clean_age_hours() * 2 * HOUR_MS),
            ),
        ]
        if reconcile is not None:
            duties.append(Duty("outbox-reconcile", every, reconcile))
        duties += heap_duties(settings)
        snapshots = SnapshotService(
            SqlSnapshotStore(engine), items, item_store, clock,
            limit=lambda: int(config.current()["maxSnapshotsPerNotebookItem"]),
        )  # fmt: skip
        interactive = InteractiveService(
            containers, jobs, items, runtimes, settings, clock,
            save_version=functools.partial(snapshots.save_version, source="JupyterLab"),
            limits=lab_limits(config), host=lab,
        )  # fmt: skip
        duties.append(Duty("lab-cull", settings.interactive.lab_check_seconds, interactive.cull))
        if lab is not None:
            duties.append(Duty("lab-check", settings.interactive.lab_check_seconds, lab.tick))
        feed = JobFeed(lambda since, limit: store.changes(since, limit=limit), clock)
        metrics.watch_streams(lambda: feed.subscribers)
        web = WebServices(
            settings=settings,
            clock=clock,
            jobs=jobs,
            notebooks=notebooks,
            items=items,
            users=users,
            tokens=tokens,
            tasks=tasks,
            webhooks=webhooks,
            runtimes=runtimes,
            webtools=webtools,
            config=config,
            machines=MachineService(workers, store, clock, lease_ms=lease_ms, local=local),
            statistics=StatisticsService(SqlUsageStore(engine), clock),
            logs=logs,
            metrics=MetricsService(metrics),
            notifications=notifications,
            feed=feed,
            snapshots=snapshots,
            interactive=interactive,
        )
        return cls(
            interactive=interactive,
            settings=settings,
            clock=clock,
            store=store,
            service=jobs,
            users=users,
            tokens=tokens,
            items=items,
            notebooks=notebooks,
            tasks=tasks,
            scheduler=scheduler,
            webhooks=webhooks,
            runtimes=runtimes,
            webtools=webtools,
            config=config,
            workers=workers,
            dispatcher=dispatcher,
            pool=pool,
            supervisor=supervisor,
            recovery=recovery,
            housekeeper=Housekeeper(clock, duties),
            web=web,
            logs=logs,
            log_handler=log_handler,
            notifications=notifications,
            host_prefix=host_prefix,
            boot_prefix=boot_prefix,
            metrics=metrics,
            metrics_listener=None,
        )

    def prepare(self) -> None:
        """The server's first writes: the default runtime and the kernelspecs of runtimes with their own
        environment; and the probe of how this machine enforces resource limits (cgroups or rlimits)."""
        self.runtimes.ensure_default()
        self.runtimes.install_kernelspecs()
        if self.supervisor is not None:
            self.supervisor.limits = detect_backend()
            log.info("resource limits enforced with %s", self.supervisor.limits.name)
            if self.supervisor.lab is not None:
                self.supervisor.lab.limits = self.supervisor.limits

    def recover(self) -> int:
        """End what an earlier run of this server on this host left EXECUTING; returns how many."""
        lab = self.interactive.host
        if lab is not None:
            counts = lab.recover()
            if any(counts.values()):
                log.info("notebook servers an earlier run left: %(adopted)s re-adopted, %(stopped)s stopped",
                         counts)  # fmt: skip
        return len(self.recovery.after_restart(self.host_prefix + "/", self.boot_prefix))

    def start(self) -> None:
        self.log_handler.refresh(self.logs.store)
        self.log_handler.attach()
        self.prepare()
        self.recover()
        self.dispatcher.start()
        self.housekeeper.start()
        if self.settings.metrics.metrics_port and self.metrics_listener is None:
            self.metrics_listener = self.metrics.serve(
                self.settings.metrics.metrics_host, self.settings.metrics.metrics_port
            )

    def stop(self, grace: float | None = 30.0) -> None:
        """Take no new jobs and let running ones finish for up to ``grace`` seconds (None: no limit);
        end those still running then as lost (or re-queue them, by their policy), kill their runners
        and kernels, and close the store. SUBMITTED jobs stay SUBMITTED for the next start."""
        self.web.feed.close()  # the event streams end
        self.housekeeper.stop()
        saved = self.interactive.save_and_stop_hosted()  # open notebooks are saved to their items
        if saved:
            log.info("saved %d open notebooks before stopping their servers", saved)
        self.notifications.close()
        if grace is not None and not self.dispatcher.drain(grace):
            self.recovery.abandon_running(
                self.boot_prefix + "/", "the server was stopped before the job finished"
            )
            # each supervisor sees its job ended at once (woken) and stops its runner and kernel
            grace = self.settings.execution.poll_seconds + 2 * self.settings.execution.kill_grace_seconds + 5
        self.dispatcher.stop(grace)
        if self.metrics_listener is not None:  # scraped through the drain
            self.metrics_listener.stop()
            self.metrics_listener = None
        self.log_handler.detach()
        self.log_handler.ship(self.logs.store)  # what the last second logged
        self.store.close()
