"""What the web layer may call: the services, by capability, and the settings it renders with.

The server's composition root (``roots/server.py``) builds one ``WebServices``; ``create_app`` keeps
it on the ASGI app and ``deps.Nb`` hands it to each route. Routes never see the root, a store, a
dispatcher or a pool: they authenticate the caller and ask a service, which decides (``service.authz``).
"""

from __future__ import annotations

from dataclasses import dataclass

from nbjobs.clock import Clock
from nbjobs.service.accounts.tokens import TokenService
from nbjobs.service.accounts.users import UserService
from nbjobs.service.automation.tasks import TaskService
from nbjobs.service.automation.webhooks import WebhookService
from nbjobs.service.content.items import ItemService
from nbjobs.service.content.snapshots import SnapshotService
from nbjobs.service.interactive.service import InteractiveService
from nbjobs.service.jobs.execute_notebook import NotebookExecution
from nbjobs.service.jobs.feed import JobFeed
from nbjobs.service.jobs.service import JobService
from nbjobs.service.notifications.service import NotificationService
from nbjobs.service.runtimes.registry import RuntimeService
from nbjobs.service.system.config import ConfigService
from nbjobs.service.system.logs import LogService
from nbjobs.service.system.machines import MachineService
from nbjobs.service.system.metrics import MetricsService
from nbjobs.service.system.statistics import StatisticsService
from nbjobs.service.webtools.service import WebToolService
from nbjobs.settings import Settings


@dataclass(frozen=True)
class WebServices:
    settings: Settings
    clock: Clock
    jobs: JobService
    notebooks: NotebookExecution  # executeNotebook of an item
    items: ItemService
    users: UserService
    tokens: TokenService
    tasks: TaskService
    webhooks: WebhookService
    runtimes: RuntimeService
    webtools: WebToolService
    config: ConfigService
    machines: MachineService
    statistics: StatisticsService  # system/statistics/mostRecent
    logs: LogService  # the ArcGIS logs resource
    metrics: MetricsService  # /admin/metrics
    notifications: NotificationService  # rules, settings and delivery logs (docs/notifications.md)
    feed: JobFeed  # job changes for the event streams (web/routes/job_streams.py)
    snapshots: SnapshotService  # kept versions of items (docs/snapshots.md)
    interactive: InteractiveService  # openNotebook, users' Jupyter servers (docs/interactive.md)
