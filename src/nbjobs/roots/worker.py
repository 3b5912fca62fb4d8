"""The worker's composition root: ``Worker.from_settings`` wires one `nbjobs worker` process.

Only what a worker needs: the job store, the runtimes it serves, the supervisor with its warm pools,
the Celery consumer (``dispatch/celery/worker.py``), recovery and its housekeeper (heartbeat, lease
reaper). No web services, no scheduler, no local dispatcher.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from nbjobs.clock import Clock, now_ms
from nbjobs.dispatch.celery.publisher import CeleryDispatcher, make_celery
from nbjobs.dispatch.celery.worker import Listener, WorkerNode
from nbjobs.errors import ConfigurationError
from nbjobs.execution.lab.host import LabHost
from nbjobs.execution.limits import detect_backend
from nbjobs.execution.supervisor import Supervisor
from nbjobs.models.runtimes import RuntimeSpec
from nbjobs.roots.parts import heap_duties, job_supervisor, process_prefix, runtime_registry, token_service
from nbjobs.service.accounts.users import UserService
from nbjobs.service.content.items import ItemService
from nbjobs.service.content.snapshots import SnapshotService
from nbjobs.service.housekeeping import Duty, Housekeeper
from nbjobs.service.interactive.service import InteractiveService, lab_limits
from nbjobs.service.jobs.recovery import Recovery
from nbjobs.service.jobs.service import JobService
from nbjobs.service.runtimes.registry import RuntimeService
from nbjobs.service.system.config import ConfigService
from nbjobs.settings import Settings
from nbjobs.store.config import SqlConfigStore
from nbjobs.store.containers import SqlContainerStore
from nbjobs.store.engine import open_store
from nbjobs.store.items import SqlItemStore
from nbjobs.store.jobs import SqlJobStore
from nbjobs.store.logs import SqlLogStore
from nbjobs.store.notify import CancelListener
from nbjobs.store.outbox import SqlOutbox
from nbjobs.store.snapshots import SqlSnapshotStore
from nbjobs.store.users import SqlUserStore
from nbjobs.store.workers import SqlWorkerStore
from nbjobs.telemetry.logs import StoreLogHandler
from nbjobs.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class Worker:
    """One `nbjobs worker`: ``run`` blocks until it has drained and stopped."""

    settings: Settings
    store: SqlJobStore
    runtimes: RuntimeService
    supervisor: Supervisor
    node: WorkerNode
    metrics: Metrics  # this process's metrics: served on NBJOBS_METRICS_PORT (--metrics-port) when set
    # feeds the logs resource (the server's housekeeper keeps its retention) while running
    log_handler: StoreLogHandler | None = field(default=None)
    log_store: SqlLogStore | None = field(default=None)
    # users' Jupyter servers this worker hosts (openNotebook jobs), saved and stopped when it stops
    interactive: InteractiveService | None = field(default=None)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        runtime_keys: tuple[str, ...] = (),
        concurrency: int | None = None,
        clock: Clock = now_ms,
    ) -> Worker:
        """Wire a worker for the runtimes named by ``runtime_keys`` (ids or names; none: the default).
        ConfigurationError without a broker or a shared database."""
        if not settings.broker.broker_url:
            raise ConfigurationError("a broker is required: --broker-url or NBJOBS_BROKER_URL")
        if not settings.store.database_url:
            raise ConfigurationError(
                "a shared database is required: --database-url or NBJOBS_DATABASE_URL (PostgreSQL)"
            )
        store = open_store(settings)
        engine = store.engine
        lease_ms = int(settings.execution.lease_seconds * 1000)
        runtimes = runtime_registry(engine, settings, clock)
        specs: list[RuntimeSpec] = [runtimes.lookup(key) for key in runtime_keys] or [runtimes.default()]
        user_store = SqlUserStore(engine)
        users = UserService(user_store, clock)
        tokens = token_service(engine, user_store, settings, clock)
        config = ConfigService(settings, SqlConfigStore(engine), clock)
        log_store = SqlLogStore(engine)
        log_handler = StoreLogHandler(capacity=settings.logging.log_buffer_size, machine=socket.gethostname())
        metrics = Metrics()
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
        containers = SqlContainerStore(engine)
        lab = supervisor.lab = LabHost(
            store, containers, settings, clock, node=socket.gethostname(), runtimes=runtimes.find,
            max_containers=lambda: int(config.current()["maxContainersPerNode"]),
        )  # fmt: skip
        item_store = SqlItemStore(engine)
        items = ItemService(item_store, clock, max_bytes=settings.limits.max_upload_bytes)
        snapshots = SnapshotService(
            SqlSnapshotStore(engine), items, item_store, clock,
            limit=lambda: int(config.current()["maxSnapshotsPerNotebookItem"]),
        )  # fmt: skip
        interactive = InteractiveService(
            containers, JobService(store, settings, clock), items, runtimes, settings, clock,
            save_version=functools.partial(snapshots.save_version, source="JupyterLab"),
            limits=lab_limits(config), host=lab,
        )  # fmt: skip
        dispatcher = CeleryDispatcher(make_celery(settings), SqlOutbox(engine), clock)
        workers = SqlWorkerStore(engine)
        recovery = Recovery(
            store,
            workers,
            clock,
            lease_ms=lease_ms,
            requeued=dispatcher.notify,
            wake=supervisor.wake,
            events=metrics,
        )
        listen: Callable[[Callable[[str], None]], Listener] | None = None
        if engine.dialect.name == "postgresql":

            def listen(on_cancel: Callable[[str], None]) -> Listener:
                listener = CancelListener(engine, on_cancel)
                listener.start()
                return listener

        node = WorkerNode(
            settings=settings,
            store=store,
            workers=workers,
            supervisor=supervisor,
            dispatcher=dispatcher,
            clock=clock,
            runtimes=specs,
            concurrency=concurrency or settings.pool.workers or 1,
            worker_id=process_prefix(),
            recovery=recovery,
            listen_cancels=listen,
        )
        # A worker reaps expired leases too, so jobs of a worker killed outright end even while no API
        # server runs (the reaper's writes are fenced: several reapers never disagree).
        node.duties = Housekeeper(
            clock,
            [
                Duty("worker-heartbeat", settings.execution.heartbeat_seconds, node.beat),
                Duty("lease-reaper", settings.housekeeping.reaper_interval_seconds, recovery.reap_expired),
                Duty("ship-logs", 1.0, lambda: log_handler.ship(log_store)),  # the logs resource
                Duty("lab-check", settings.interactive.lab_check_seconds, lab.tick),  # users' servers
                *heap_duties(settings),
            ],
            name="nbjobs-worker-agent",
        )
        # Only this process's numbers: the job table's gauges are the API server's (one truth, not N copies).
        metrics.watch_pools(supervisor.pool_states)
        metrics.watch_slots(node.slots)
        return cls(
            settings, store, runtimes, supervisor, node, metrics,
            log_handler=log_handler, log_store=log_store, interactive=interactive,
        )  # fmt: skip

    def prepare(self) -> None:
        """The kernelspecs of runtimes with their own environment, and the resource-limit probe."""
        self.runtimes.install_kernelspecs()
        self.supervisor.limits = detect_backend()
        log.info("resource limits enforced with %s", self.supervisor.limits.name)
        if self.supervisor.lab is not None:
            self.supervisor.lab.limits = self.supervisor.limits
            counts = self.supervisor.lab.recover()
            if any(counts.values()):
                log.info("notebook servers an earlier run left: %(adopted)s re-adopted, %(stopped)s stopped",
                         counts)  # fmt: skip

    def run(self, *, loglevel: str = "INFO") -> int:
        """Serve the queues until SIGTERM (drain) or SIGQUIT/second SIGINT (cold); the exit code."""
        listener = None
        if self.log_handler is not None and self.log_store is not None:
            self.log_handler.refresh(self.log_store)
            self.log_handler.attach()
        try:
            self.prepare()
            if self.settings.metrics.metrics_port:
                listener = self.metrics.serve(
                    self.settings.metrics.metrics_host, self.settings.metrics.metrics_port
                )
            return self.node.run(loglevel=loglevel)
        finally:
            if self.interactive is not None:
                saved = self.interactive.save_and_stop_hosted()  # open notebooks go to their items
                if saved:
                    log.info("saved %d open notebooks before stopping their servers", saved)
            if listener is not None:
                listener.stop()
            if self.log_handler is not None and self.log_store is not None:
                self.log_handler.detach()
                self.log_handler.ship(self.log_store)  # what the last second logged
            self.store.close()
