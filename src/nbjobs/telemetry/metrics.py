"""Prometheus metrics of one process: ``Metrics`` owns its own ``CollectorRegistry`` (never the global
default one), is built once by the process's root and handed to what reports.

Two kinds of numbers:

* **events** (counters and histograms, per process): jobs submitted / started / ended, their queue wait
  and duration, kernel starts, scheduler fires, webhook and notification deliveries, HTTP requests.
  They are pushed by the parts that see them: ``Metrics`` implements ``models.events.JobEvents``.
* **state** (gauges, read at scrape time by ``_StateCollector``): jobs not ended by type / status /
  runtime and workers online (from the store: every API replica reports the same truth, nothing can
  drift), warm pools (ready kernels, hit / miss takes) and job slots (from this process's parts).

The names follow the Prometheus conventions: ``nbjobs_`` prefix, ``_total`` for counters, ``_seconds``
for durations. ``docs/observability.md`` lists them all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from nbjobs.models.events import JobCount, PoolState, Slots
from nbjobs.models.jobs import Job

log = logging.getLogger(__name__)

CONTENT_TYPE = (
    CONTENT_TYPE_PLAIN_0_0_4  # "text/plain; version=0.0.4; charset=utf-8", what every scraper reads
)

JOB_DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
QUEUE_WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
KERNEL_START_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

UNMATCHED = "unmatched"  # the route label of a request no route matched (never the raw path)


class Metrics:
    """The metrics of one process. Cheap to build (tests make their own); nothing is global."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.jobs_submitted = Counter(
            "nbjobs_jobs_submitted_total",
            "Jobs submitted (new SUBMITTED jobs).",
            ["type", "runtime"],
            registry=r,
        )
        self.jobs_started = Counter(
            "nbjobs_jobs_started_total", "Job attempts claimed and started.", ["type", "runtime"], registry=r
        )
        self.jobs_ended = Counter(
            "nbjobs_jobs_ended_total",
            "Jobs that reached an ended status; reason is the failure reason (none for COMPLETED).",
            ["type", "status", "runtime", "reason"],
            registry=r,
        )
        self.job_duration = Histogram(
            "nbjobs_job_duration_seconds",
            "From a job's start (claim) to its end, for jobs that started.",
            ["type", "status", "runtime"],
            buckets=JOB_DURATION_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "nbjobs_job_queue_wait_seconds",
            "From a job's submit to its claim by a worker.",
            ["type", "runtime"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self.kernel_start = Histogram(
            "nbjobs_kernel_start_seconds",
            "How long a job's kernel took to start; mode=warm: started ahead by the warm pool and ready "
            "when the job took it (off the job's path), cold: the job waited for it (a cold start, or a "
            "runner still warming up).",
            ["kernel", "mode"],
            buckets=KERNEL_START_BUCKETS,
            registry=r,
        )
        self.scheduler_fires = Counter(
            "nbjobs_scheduler_fires_total",
            "Scheduled-task occasions this process fired: outcome=started (a job), queued (behind the "
            "previous run), skipped (the previous run had not ended).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("started", "queued", "skipped"):
            self.scheduler_fires.labels(outcome)
        self.scheduler_misfires = Counter(
            "nbjobs_scheduler_misfires_total",
            "Scheduled-task occasions handled later than the misfire grace (fired late).",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "nbjobs_webhook_deliveries_total",
            "Events that reached a webhook receiver, by outcome (accepted or why refused).",
            ["outcome"],
            registry=r,
        )
        self.notification_deliveries = Counter(
            "nbjobs_notification_deliveries_total",
            "Notification delivery attempts, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.http_requests = Counter(
            "nbjobs_http_requests_total",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "nbjobs_http_request_duration_seconds",
            "HTTP request latency by route template and method, until the response is sent.",
            ["route", "method"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self._state = _StateCollector()
        r.register(self._state)

    # -- state read at scrape time ------------------------------------------------------------------
    def watch_jobs(self, counts: Callable[[], Sequence[JobCount]]) -> None:
        """Report ``nbjobs_jobs`` (jobs not ended, by type, status and runtime) from ``counts``."""
        self._state.jobs.append(counts)

    def watch_workers(self, online: Callable[[], int]) -> None:
        """Report ``nbjobs_workers_online`` from ``online``."""
        self._state.workers.append(online)

    def watch_pools(self, pools: Callable[[], Sequence[PoolState]]) -> None:
        """Report the warm pools (ready kernels, hits, misses) from ``pools``."""
        self._state.pools.append(pools)

    def watch_slots(self, slots: Callable[[], Slots]) -> None:
        """Report ``nbjobs_worker_slots`` (busy / free) from ``slots``."""
        self._state.slots.append(slots)

    def watch_streams(self, open_streams: Callable[[], int]) -> None:
        """Report ``nbjobs_event_streams`` (job event streams open now) from ``open_streams``."""
        self._state.streams.append(open_streams)

    # -- JobEvents ------------------------------------------------------------------------------------
    def submitted(self, job: Job) -> None:
        self.jobs_submitted.labels(str(job.type), job.runtime.name).inc()

    def started(self, job: Job) -> None:
        self.jobs_started.labels(str(job.type), job.runtime.name).inc()
        if job.start_time and job.date_created:
            wait = max(job.start_time - job.date_created, 0) / 1000
            self.queue_wait.labels(str(job.type), job.runtime.name).observe(wait)

    def kernel_started(self, job: Job, seconds: float, *, warm: bool) -> None:
        self.kernel_start.labels(job.runtime.kernel_name, "warm" if warm else "cold").observe(max(seconds, 0))

    def ended(self, job: Job) -> None:
        reason = str(job.failure.reason) if job.failure is not None else "none"
        status = str(job.status)
        self.jobs_ended.labels(str(job.type), status, job.runtime.name, reason).inc()
        if job.start_time and job.end_time:
            duration = max(job.end_time - job.start_time, 0) / 1000
            self.job_duration.labels(str(job.type), status, job.runtime.name).observe(duration)

    # -- other events -----------------------------------------------------------------------------------
    def scheduler_ticked(self, *, started: int, queued: int, skipped: int, misfired: int) -> None:
        """One scheduler pass fired these occasions; ``misfired`` of them later than the grace."""
        for outcome, n in (("started", started), ("queued", queued), ("skipped", skipped)):
            if n:
                self.scheduler_fires.labels(outcome).inc(n)
        if misfired:
            self.scheduler_misfires.inc(misfired)

    def webhook_delivered(self, outcome: str) -> None:
        """An event reached a receiver: ``accepted``, or why it was refused (``bad_signature``, …)."""
        self.webhook_deliveries.labels(outcome).inc()

    def notification_delivered(self, outcome: str) -> None:
        """One notification delivery attempt ended with ``outcome`` (e.g. ``sent``, ``failed``,
        ``retrying``, ``refused``): a short word from a fixed set, never a message or an address."""
        self.notification_deliveries.labels(outcome).inc()

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One HTTP request answered: ``route`` is its template (or ``unmatched``)."""
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_duration.labels(route, method).observe(seconds)

    # -- exposition -------------------------------------------------------------------------------------
    def render(self) -> bytes:
        """Everything in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> MetricsListener:
        """Serve ``/metrics`` (any path, in fact) without authentication on ``host:port`` from a daemon
        thread; ``stop`` the listener to close it."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics at http://%s:%s/metrics", host, server.server_port)
        return MetricsListener(server, thread)


class MetricsListener:
    """The scrape listener ``Metrics.serve`` started."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _StateCollector(Collector):
    """Gauges (and the pools' take counters) computed at scrape time from the watched sources. A source
    that fails is logged and left out of that scrape; the rest is still answered."""

    def __init__(self) -> None:
        self.jobs: list[Callable[[], Sequence[JobCount]]] = []
        self.workers: list[Callable[[], int]] = []
        self.pools: list[Callable[[], Sequence[PoolState]]] = []
        self.slots: list[Callable[[], Slots]] = []
        self.streams: list[Callable[[], int]] = []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        if self.jobs:
            jobs = GaugeMetricFamily(
                "nbjobs_jobs",
                "Jobs not ended now, by type, status and runtime (from the job table).",
                labels=["type", "status", "runtime"],
            )
            totals: dict[tuple[str, str, str], int] = {}
            for count_source in self.jobs:
                for c in _safe(count_source, "job counts") or []:
                    key = (str(c.type), str(c.status), c.runtime)
                    totals[key] = totals.get(key, 0) + c.count
            for (type_, status, runtime), count in sorted(totals.items()):
                jobs.add_metric([type_, status, runtime], count)
            yield jobs
        if self.workers:
            online = GaugeMetricFamily(
                "nbjobs_workers_online", "Worker processes with a fresh heartbeat (from the workers table)."
            )
            online.add_metric([], sum(_safe(source, "workers online") or 0 for source in self.workers))
            yield online
        if self.pools:
            ready = GaugeMetricFamily(
                "nbjobs_warm_pool_ready_kernels",
                "Warm runners whose kernel is ready, per kernel.",
                labels=["kernel"],
            )
            hits = CounterMetricFamily(
                "nbjobs_warm_pool_hits", "Takes that found a runner with a ready kernel.", labels=["kernel"]
            )
            misses = CounterMetricFamily(
                "nbjobs_warm_pool_misses",
                "Takes that found none ready (a runner still warming up, or a cold start).",
                labels=["kernel"],
            )
            for pool_source in self.pools:
                for pool in _safe(pool_source, "warm pools") or []:
                    ready.add_metric([pool.kernel], pool.ready)
                    hits.add_metric([pool.kernel], pool.hits)
                    misses.add_metric([pool.kernel], pool.misses)
            yield from (ready, hits, misses)
        if self.slots:
            slots = GaugeMetricFamily(
                "nbjobs_worker_slots", "This process's job slots, busy or free.", labels=["state"]
            )
            busy = free = 0
            for source in self.slots:
                now = _safe(source, "job slots") or Slots(0, 0)
                busy, free = busy + now.busy, free + now.free
            slots.add_metric(["busy"], busy)
            slots.add_metric(["free"], free)
            yield slots
        if self.streams:
            streams = GaugeMetricFamily(
                "nbjobs_event_streams", "Job event streams (SSE) open on this server process now."
            )
            streams.add_metric([], sum(_safe(source, "event streams") or 0 for source in self.streams))
            yield streams


_T = TypeVar("_T")


def _safe(source: Callable[[], _T], what: str) -> _T | None:
    """``source()``, or None (logged) when it fails: a scrape answers even when the database does not."""
    try:
        return source()
    except Exception:
        log.exception("metrics: could not read %s", what)
        return None
