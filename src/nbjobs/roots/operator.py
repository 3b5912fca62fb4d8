"""The operator's composition root: what the maintenance commands (`nbjobs users|runtimes|tasks|db`)
work on, over a data directory's database, without a server running.

``Operator.open(settings)`` wires only the services those commands use; ``close`` releases the
database. The schema commands (``database_revision``, ``upgrade_database``) do not open the store at
all: they must work on an empty or older database.
"""

from __future__ import annotations

from dataclasses import dataclass

from nbjobs.clock import Clock, now_ms
from nbjobs.models.portal_stores import TaskStore
from nbjobs.roots.parts import runtime_registry, token_service
from nbjobs.service.accounts.tokens import TokenService
from nbjobs.service.accounts.users import UserService
from nbjobs.service.notifications.events import NotifyPolicy
from nbjobs.service.notifications.service import NotificationService
from nbjobs.service.notifications.targets import AllowList
from nbjobs.service.runtimes.registry import RuntimeService
from nbjobs.settings import Settings
from nbjobs.store.engine import make_engine, open_store
from nbjobs.store.jobs import SqlJobStore
from nbjobs.store.migrate import current, upgrade
from nbjobs.store.notifications import SqlNotificationStore
from nbjobs.store.tasks import SqlTaskStore
from nbjobs.store.users import SqlUserStore


@dataclass
class Operator:
    users: UserService
    tokens: TokenService
    runtimes: RuntimeService
    tasks: TaskStore  # read-only views of every user's tasks
    notifications: NotificationService  # settings, test messages, delivery logs (`nbjobs notify`)
    _store: SqlJobStore

    @classmethod
    def open(cls, settings: Settings, clock: Clock = now_ms) -> Operator:
        store = open_store(settings)
        engine = store.engine
        user_store = SqlUserStore(engine)
        runtimes = runtime_registry(engine, settings, clock)
        return cls(
            users=UserService(user_store, clock),
            tokens=token_service(engine, user_store, settings, clock),
            runtimes=runtimes,
            tasks=SqlTaskStore(engine),
            notifications=NotificationService(
                SqlNotificationStore(engine),
                store,
                clock,
                policy=NotifyPolicy.from_settings(settings.notifications),
                allow=AllowList.parse(settings.notifications.notify_allow_list.split(",")),
            ),
            _store=store,
        )

    def close(self) -> None:
        self._store.close()


def upgrade_database(settings: Settings) -> tuple[str, str, str]:
    """Create or migrate the schema to the newest revision: (database URL without password, revision
    before or "", revision after)."""
    engine = make_engine(settings)
    try:
        before = current(engine) or ""
        upgrade(engine)
        return engine.url.render_as_string(hide_password=True), before, current(engine) or ""
    finally:
        engine.dispose()
