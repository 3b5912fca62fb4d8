"""``nbjobs serve``: the server with its embedded worker pool, over HTTPS by default."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from nbjobs.errors import NbJobsError
from nbjobs.settings import load_settings

SHUTDOWN_SECONDS = 5  # for requests still in flight when the server is asked to stop


@click.command()
@click.option("--host", help="Interface to listen on. [env NBJOBS_HOST; default 127.0.0.1]")
@click.option("--port", type=int, help="TCP port. [env NBJOBS_PORT; default 8443]")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the SQLite database and job scratch space live. [env NBJOBS_DATA_DIR; default ./var]",
)
@click.option(
    "--workers",
    type=int,
    help="Notebook jobs run at once by the local pool (0: none). [env NBJOBS_WORKERS; default CPU count]",
)
@click.option(
    "--cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="TLS certificate (PEM). [env NBJOBS_CERT_FILE; default: a self-signed one in the data dir]",
)
@click.option(
    "--key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="TLS private key (PEM) for --cert. [env NBJOBS_KEY_FILE]",
)
@click.option(
    "--insecure-http",
    is_flag=True,
    default=None,
    help="Serve plain HTTP (local use only: the ArcGIS client wants HTTPS). [env NBJOBS_INSECURE_HTTP]",
)
@click.option(
    "--drain-seconds",
    type=float,
    help="On SIGTERM/SIGINT: stop serving and taking jobs, let running ones finish for this long, then "
    "end them as lost (FAILED, worker_lost). [env NBJOBS_DRAIN_SECONDS; default 600]",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    workers: int | None,
    cert: Path | None,
    key: Path | None,
    insecure_http: bool | None,
    drain_seconds: float | None,
) -> None:
    """Start the server: the ArcGIS-compatible API plus a local pool of notebook workers.

    SIGTERM (or Ctrl-C) stops it gracefully: see --drain-seconds; a second signal stops it at once
    (what still runs is then recovered at the next start)."""
    import uvicorn

    from nbjobs.heap import Heap
    from nbjobs.roots.server import Server
    from nbjobs.telemetry.logs import configure_logging
    from nbjobs.web.app import create_app
    from nbjobs.web.tls import ensure_self_signed

    try:
        settings = load_settings(
            host=host,
            port=port,
            data_dir=data_dir,
            workers=workers,
            cert_file=cert,
            key_file=key,
            insecure_http=insecure_http,
            drain_seconds=drain_seconds,
        )
        configure_logging(settings)  # NBJOBS_LOG_FORMAT (text|json), NBJOBS_LOG_LEVEL
        # before any thread starts: arenas made earlier stay (nbjobs/heap.py, NBJOBS_MALLOC_ARENAS)
        Heap().limit_arenas(settings.housekeeping.malloc_arenas)
        if (settings.server.cert_file is None) != (settings.server.key_file is None):
            raise click.UsageError("--cert and --key go together")
        server = Server.from_settings(settings)
        accounts = settings.accounts
        admin_password = server.users.ensure_admin(accounts.admin_user, accounts.admin_password)
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    scheme = "http"
    if not settings.server.insecure_http:
        scheme = "https"
        cert_file, key_file = settings.server.cert_file, settings.server.key_file
        if cert_file is None or key_file is None:
            cert_file, key_file, created = ensure_self_signed(settings.store.data_dir, settings.server.host)
            made = "created" if created else "using"
            click.echo(f"{made} self-signed certificate {cert_file.resolve()}")
        ssl_certfile, ssl_keyfile = str(cert_file), str(key_file)
    if admin_password is not None:
        click.echo(f"created administrator {settings.accounts.admin_user!r} with password: {admin_password}")
        click.echo("  (shown once; change it with: nbjobs users passwd)")
    server.start()
    url = f"{scheme}://{settings.server.host}:{settings.server.port}/{settings.server.context}"
    runs = f"{settings.pool.workers} worker(s)"
    if settings.broker.broker_url:
        runs = "jobs go to the broker (run `nbjobs worker`)"
    click.echo(f"nbjobs {runs}, data in {settings.store.data_dir.resolve()}")
    click.echo(f"serving at {url}  (portal {url}/sharing/rest, admin {url}/admin)", nl=True)
    # uvicorn handles SIGTERM/SIGINT itself, then restores the handlers it found and raises the signal
    # again: with the default ones the process would die there, before the pool drains.
    draining = threading.Event()

    def stop_requested(sig: int, _frame: object) -> None:
        # The signal uvicorn passes on once it stopped serving: the drain follows. Another one during
        # the drain stops the process at once (its running jobs are recovered at the next start).
        if draining.is_set():
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    previous = {sig: signal.signal(sig, stop_requested) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        app = create_app(server.web)
        uvicorn.run(
            app,
            host=settings.server.host,
            port=settings.server.port,
            log_level="warning",
            log_config=None,  # uvicorn's lines go through ours (configure_logging), its access log is off
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            # open event streams would hold the stop forever: after this, uvicorn cancels what is left
            timeout_graceful_shutdown=SHUTDOWN_SECONDS,
            # the browser side of the notebooks' WebSockets: webSocketSize (MiB) as configured at start;
            # the proxy checks the current value on every message too (docs/interactive.md)
            ws_max_size=int(server.web.config.current()["webSocketSize"]) * 2**20,
        )
    finally:
        draining.set()
        logging.getLogger(__name__).warning(
            "stopping: running jobs may finish within %gs", settings.pool.drain_seconds
        )
        server.stop(grace=settings.pool.drain_seconds)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
