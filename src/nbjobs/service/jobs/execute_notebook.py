"""executeNotebook: run a stored notebook item as a job, and write the result back to the item."""

from __future__ import annotations

import logging

from nbjobs.clock import Clock
from nbjobs.errors import InvalidRequest, UnknownRuntimeId
from nbjobs.models.accounts import User
from nbjobs.models.jobs import NO_RETRIES, OUTPUT, Job, JobInputs, JobStatus, RetryPolicy
from nbjobs.models.notifications import Rule
from nbjobs.models.parameters import NotebookParameters
from nbjobs.models.portal_stores import ItemStore
from nbjobs.models.runtimes import DEFAULT_RUNTIME, Runtime
from nbjobs.service.authz import CREATE_NOTEBOOKS, require_privilege
from nbjobs.service.content.items import ItemService
from nbjobs.service.jobs.service import JobService
from nbjobs.service.notifications.service import NotificationService
from nbjobs.service.runtimes.registry import RuntimeService

log = logging.getLogger(__name__)


class NotebookExecution:
    """The executeNotebook use case over the job and item services."""

    def __init__(
        self,
        jobs: JobService,
        items: ItemService,
        item_store: ItemStore,
        clock: Clock,
        runtimes: RuntimeService | None = None,
        notifications: NotificationService | None = None,
    ) -> None:
        self.jobs = jobs
        self.notifications = notifications  # None: jobs get no notification rules (tests of other parts)
        self.items = items
        self.item_store = item_store
        self.clock = clock
        self.runtimes = runtimes  # None: only the built-in default runtime (tests of other parts)

    def execute(
        self,
        user: User,
        item_id: str,
        *,
        update_portal_item: bool = True,
        parameters: NotebookParameters | None = None,
        save_injected_parameters: bool = False,
        timeout_minutes: int | None = None,
        runtime_id: str = "",
        task_id: str = "",
        run_id: str = "",
        webhook_receiver_id: str = "",
        retry: RetryPolicy = NO_RETRIES,
        notifications: tuple[Rule, ...] | None = None,
    ) -> Job:
        """Submit the item's notebook as an executeNotebook job owned by ``user`` (``task_id``/``run_id``
        mark a run of a scheduled task). The runtime is ``runtime_id``, else the notebook's, else the
        default (see ``RuntimeService.choose``)."""
        require_privilege(user, CREATE_NOTEBOOKS)
        who = user.principal()
        if not item_id:
            raise InvalidRequest("itemId is required.")
        _, notebook = self.items.data(who, item_id)
        runtime = self._runtime(user, runtime_id, notebook)
        inputs = JobInputs(
            item_id=item_id,
            execution_timeout_minutes=timeout_minutes,
            update_portal_item=update_portal_item,
            save_injected_parameters=save_injected_parameters,
            task_id=task_id,
            run_id=run_id,
            webhook_receiver_id=webhook_receiver_id,
        )
        job = self.jobs.submit(
            who, notebook, inputs=inputs, parameters=parameters, runtime=runtime, retry=retry
        )
        if update_portal_item:
            self.item_store.add_pending_update(job.job_id, item_id, self.clock())
        if self.notifications is not None:
            # the submit's own rules, else those of the task it is a run of; written right after the
            # job: a crash in between leaves a job without notifications (docs/notifications.md)
            if notifications is None and task_id:
                notifications = self.notifications.scope_rules(f"task:{task_id}")
            self.notifications.attach(job, notifications or ())
        return job

    def on_job_end(self, job: Job) -> None:
        """Hook for the core: a job ended; write its notebook back if that was asked."""
        self.sync_item_updates(only=job.job_id)

    def sync_item_updates(self, only: str | None = None) -> int:
        """Write the executed notebooks of COMPLETED jobs back to their items; returns how many."""
        written = 0
        for job_id, item_id in self.item_store.pending_updates():
            if only is not None and job_id != only:
                continue
            job = self.jobs.store.get(job_id)
            if job is not None and not job.ended:
                continue
            if job is not None and job.status == JobStatus.COMPLETED:
                output = self.jobs.store.get_blob(job_id, OUTPUT)
                if output and self.items.write_back(item_id, output):
                    written += 1
                    log.info("job %s wrote its executed notebook to item %s", job_id, item_id)
            self.item_store.drop_pending_update(job_id)
        return written

    def _runtime(self, user: User, runtime_id: str, notebook: bytes) -> Runtime:
        if self.runtimes is not None:
            return self.runtimes.choose(user, runtime_id, notebook).identity
        if runtime_id and runtime_id != DEFAULT_RUNTIME.runtime_id:
            raise UnknownRuntimeId(runtime_id)
        return DEFAULT_RUNTIME
