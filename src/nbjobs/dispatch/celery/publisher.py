"""Celery as the dispatcher: a message ``{job_id, attempt}`` per claim to make, one queue per runtime.

The broker is a hint, never the record. Messages are acknowledged early and carry no result
(no result backend); a worker that gets one claims the job by a compare-and-set on status and
attempt, so a duplicate, redelivered or late message does nothing. What a broker loses, the
reconciler (``reconciler.py`` beside this module) publishes again from the job table.

Celery is the optional extra ``nbjobs[celery]``, imported only when a broker URL is configured.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from nbjobs.clock import Clock
from nbjobs.errors import ConfigurationError, StoreUnavailable
from nbjobs.models.jobs import Job, Waiting
from nbjobs.models.stores import Outbox
from nbjobs.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

TASK_NAME = "nbjobs.run_job"
QUEUE_PREFIX = "rt."


def queue_name(runtime_id: str) -> str:
    """The broker queue of a runtime: ``rt.<runtime id>`` (ids never change, names may)."""
    return f"{QUEUE_PREFIX}{runtime_id}"


def task_id(job_id: str, attempt: int) -> str:
    """The Celery task id of one claim: the same job and attempt always make the same id."""
    return f"{job_id}:{attempt}"


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings.broker.broker_url`` with the delivery settings nbjobs relies on."""
    try:
        from celery import Celery
        from celery.app import defaults as celery_defaults
    except ImportError as exc:
        raise ConfigurationError(
            "NBJOBS_BROKER_URL is set but Celery is not installed; install the extra: "
            "pip install 'nbjobs[celery]'"
        ) from exc
    url = settings.broker.broker_url
    if not url.startswith(("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://")):
        scheme = url.split(":", 1)[0]
        raise ConfigurationError(f"NBJOBS_BROKER_URL must be a redis:// or amqp:// URL, got {scheme!r}")
    app = Celery("nbjobs", broker=url, set_as_current=False)
    conf: dict[str, Any] = {
        # The job table is the only state: no result backend, nothing to expire or to disagree with.
        "task_ignore_result": True,
        "result_backend": None,
        # Early ack: a worker that dies mid-job never gets the message redelivered; the lease reaper
        # decides (at-most-once by default, opt-in retry_on_worker_lost).
        "task_acks_late": False,
        "task_reject_on_worker_lost": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # A busy worker must not hold messages another could start now.
        "worker_prefetch_multiplier": 1,
        # After a broker reconnect Celery lowers the prefetch and raises it again on each ack; with the
        # thread pool that ack, and its synchronous basic.qos, runs in a task's thread while the consumer
        # reads the same AMQP socket: measured, the consumer hung 30 s after a RabbitMQ restart and
        # then failed on a garbled frame. The prefetch is 1 per slot anyway: nothing to reduce.
        "worker_enable_prefetch_count_reduction": False,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_create_missing_queues": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # workers reconnect for as long as it takes
        # A submit must not hang on a dead broker: a failed publish is logged and reconciled later.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        "broker_connection_timeout": 4,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }
    if url.startswith(("redis://", "rediss://")) and "worker_disable_prefetch" in celery_defaults.DEFAULTS:
        # Celery >= 5.6 on Redis: fetch only when a pool slot is free (memo F3).
        conf["worker_disable_prefetch"] = True
    if settings.broker.broker_transport_options:  # validated as a JSON object by Settings
        conf["broker_transport_options"] = json.loads(settings.broker.broker_transport_options)
    app.conf.update(conf)
    return app


class CeleryDispatcher:
    """Publishes committed SUBMITTED jobs to their runtime's queue and records when it did."""

    def __init__(self, app: Celery, outbox: Outbox, clock: Clock) -> None:
        self.app = app
        self.outbox = outbox
        self.clock = clock

    def notify(self, job: Job) -> None:
        self.publish([Waiting(job.job_id, job.attempt, job.runtime.runtime_id, 0)])

    def publish(self, waiting: list[Waiting]) -> int:
        """Send one message per job (for its next attempt); returns how many the broker took."""
        sent = []
        for w in waiting:
            attempt = w.attempt + 1
            try:
                self.app.send_task(
                    TASK_NAME,
                    kwargs={"job_id": w.job_id, "attempt": attempt},
                    task_id=task_id(w.job_id, attempt),
                    queue=queue_name(w.runtime_id),
                    ignore_result=True,
                )
            except Exception as exc:  # the broker is down: the job is recorded, the reconciler resends
                log.warning("could not publish job %s to the broker (%s); will retry", w.job_id, exc)
                break
            sent.append(w.job_id)
        try:
            self.outbox.mark_dispatched(sent, self.clock())
        except StoreUnavailable as exc:  # the job is committed and published: never fail its submit now
            log.warning("could not record the publish of %d job(s) (%s); they may be published twice, "
                        "which runs nothing twice", len(sent), exc)  # fmt: skip
        return len(sent)

    def depth(self, queue: str) -> int | None:
        """Messages waiting in ``queue`` (0 if it does not exist); None when the broker cannot tell."""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
                try:
                    # kombu's stubs lack queue_declare on StdChannel; every transport's channel has it
                    declared = conn.default_channel.queue_declare(queue=queue, passive=True)  # type: ignore[attr-defined]
                except Exception as exc:  # py-amqp and kombu's virtual transports raise different types
                    if "NOT_FOUND" in str(exc):
                        return 0  # Redis drops an empty list; AMQP has no such queue yet
                    raise
                return int(declared.message_count)
        except Exception as exc:
            log.info("cannot read the depth of %s: %s", queue, exc)
            return None

    def start(self) -> None:
        """Nothing to start: the API side only publishes, on the first job."""

    def drain(self, timeout: float) -> bool:
        """Nothing runs in this process: the workers drain their own jobs."""
        return True

    def stop(self, timeout: float | None = None) -> None:
        self.app.close()
