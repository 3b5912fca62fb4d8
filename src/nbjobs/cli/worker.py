"""``nbjobs worker``: run notebook jobs from the broker on this machine (the distributed mode)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from nbjobs.errors import NbJobsError


@click.command()
@click.option(
    "--runtime",
    "runtime_keys",
    multiple=True,
    metavar="NAME|ID",
    help="A runtime whose jobs this worker runs (its queue is rt.<runtime id>). Repeat for several. "
    "[default: the default runtime]",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs run at once by this worker. [env NBJOBS_WORKERS; default CPU count]",
)
@click.option(
    "--broker-url",
    help="redis://HOST:6379/0 or amqp://USER:PASS@HOST:5672//, the same as the server's. "
    "[env NBJOBS_BROKER_URL; required]",
)
@click.option(
    "--database-url",
    help="postgresql://USER:PASS@HOST/DB, the same as the server's. [env NBJOBS_DATABASE_URL; required]",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Scratch space for running jobs and kernelspecs of runtimes. [env NBJOBS_DATA_DIR; default ./var]",
)
@click.option(
    "--drain-seconds",
    type=click.FloatRange(min=0),
    help="On SIGTERM: stop taking jobs and let running ones finish for this long, then end them as "
    "lost. [env NBJOBS_DRAIN_SECONDS; default 600]",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    help="Serve this worker's Prometheus metrics without a token at http://HOST:PORT/metrics (HOST: "
    "NBJOBS_METRICS_HOST, default 127.0.0.1); 0: off. [env NBJOBS_METRICS_PORT; default 0]",
)
@click.option(
    "--loglevel",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Logging level. [env NBJOBS_LOG_LEVEL; default INFO; NBJOBS_LOG_FORMAT=json: JSON lines]",
)
def worker(
    runtime_keys: tuple[str, ...],
    concurrency: int | None,
    broker_url: str | None,
    database_url: str | None,
    data_dir: Path | None,
    drain_seconds: float | None,
    metrics_port: int | None,
    loglevel: str | None,
) -> None:
    """Run jobs of the given runtimes that the server publishes to the broker (Celery).

    \b
    Every worker and server of one deployment share NBJOBS_DATABASE_URL (PostgreSQL) and
    NBJOBS_BROKER_URL (Redis or RabbitMQ). A job runs in a fresh kernel in its own process
    group; cancel and deadlines reach it through the database. SIGTERM drains: the worker
    takes no new jobs and exits when the running ones are done (or --drain-seconds passed).
    A worker killed outright loses its jobs: they end FAILED (worker_lost) when their lease
    expires, or run again if they were submitted with retry_on_worker_lost.

    \b
    Example:
      NBJOBS_DATABASE_URL=postgresql://nbjobs:secret@db/nbjobs \\
      NBJOBS_BROKER_URL=redis://queue:6379/0 \\
      nbjobs worker --runtime "Python 3 Standard" --concurrency 4
    """
    from nbjobs.heap import Heap
    from nbjobs.roots.worker import Worker
    from nbjobs.settings import load_settings
    from nbjobs.telemetry.logs import configure_logging

    try:
        settings = load_settings(
            broker_url=broker_url,
            database_url=database_url,
            data_dir=data_dir,
            drain_seconds=drain_seconds,
            metrics_port=metrics_port,
        )
        configure_logging(settings, level=loglevel)  # NBJOBS_LOG_FORMAT; --loglevel over NBJOBS_LOG_LEVEL
        Heap().limit_arenas(settings.housekeeping.malloc_arenas)  # before any thread starts (nbjobs/heap.py)
        if not settings.broker.broker_url:
            raise click.UsageError("a broker is required: --broker-url or NBJOBS_BROKER_URL")
        if not settings.store.database_url:
            raise click.UsageError(
                "a shared database is required: --database-url or NBJOBS_DATABASE_URL (PostgreSQL)"
            )
        worker_ = Worker.from_settings(settings, runtime_keys=runtime_keys, concurrency=concurrency)
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    node = worker_.node
    names = ", ".join(f"{s.name} ({q})" for s, q in zip(node.runtimes, node.queues, strict=True))
    click.echo(f"nbjobs worker {node.worker_id}: {node.concurrency} slot(s) for {names}")  # stderr: log lines
    sys.exit(worker_.run(loglevel=(loglevel or settings.logging.log_level).upper()))
