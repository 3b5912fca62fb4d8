"""``nbjobs jobs``, ``nbjobs cancel JOB`` and ``nbjobs output JOB``: the jobs you can see."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from nbjobs.cli.client.api import Api
from nbjobs.cli.client.errors import ClientError
from nbjobs.cli.client.live import ENDED
from nbjobs.cli.client.target import Target, server_options

STATUSES = ("SUBMITTED", "EXECUTING", "CANCELLING", "COMPLETED", "FAILED", "CANCELLED")
MAX_LIST = 10_000  # the server's bound on one list


def list_jobs(api: Api, *, status: str = "", user: str = "", num: int = 50) -> list[dict[str, Any]]:
    """The newest ``num`` jobs the caller sees, filtered here by status and user (the list API has no
    filter, so a filtered list asks for the server's maximum and keeps the first ``num`` matches)."""
    ask = MAX_LIST if status or user else num
    answer = api.get("/admin/notebooks/jobs", detail="true", sortByDate="true", num=ask)
    jobs = [j for j in answer.get("notebookJobs", []) if isinstance(j, dict)]
    if status:
        jobs = [j for j in jobs if j.get("status") == status]
    if user:
        jobs = [j for j in jobs if j.get("username") == user]
    return jobs[:num]


def _when(ms: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) if ms else ""


def _duration(job: dict[str, Any]) -> str:
    start, end = job.get("startTime") or 0, job.get("endTime") or 0
    if not start:
        return ""
    elapsed = ((end or time.time() * 1000) - start) / 1000
    if elapsed < 60:
        return f"{elapsed:.1f}s"
    seconds = int(elapsed)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _progress(job: dict[str, Any]) -> str:
    progress = job.get("customAttributes", {}).get("executeNotebookProgress") or {}
    if job.get("status") in ENDED:
        failure = job.get("failure") or {}
        return str(failure.get("reason", "")) if job.get("status") != "COMPLETED" else ""
    return f"{progress.get('percent', 0)}% {progress.get('message', '')}".strip()


def render_table(jobs: list[dict[str, Any]]) -> None:
    """A rich table; the job id is never cut (the item and the rest are in ``--json``)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("JOB", no_wrap=True, min_width=max(len(str(j.get("jobId", ""))) for j in jobs))
    table.add_column("STATUS", no_wrap=True)
    for column in ("USER", "RUNTIME"):
        table.add_column(column, overflow="fold")
    table.add_column("CREATED (UTC)", no_wrap=True)
    table.add_column("DURATION", no_wrap=True, justify="right")
    table.add_column("PROGRESS", overflow="fold")
    colours = {"COMPLETED": "green", "FAILED": "red", "CANCELLED": "yellow", "EXECUTING": "cyan"}
    for job in jobs:
        status = str(job.get("status", ""))
        table.add_row(
            str(job.get("jobId", "")),
            f"[{colours.get(status, 'default')}]{status}[/]",
            str(job.get("username", "")),
            str(job.get("notebookRuntimeName", "")),
            _when(job.get("dateCreated")),
            _duration(job),
            _progress(job),
        )
    console = Console() if sys.stdout.isatty() else Console(width=160)  # a pipe: no terminal to fit
    console.print(table)


@click.command()
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), help="Only jobs in this status.")
@click.option("--user", metavar="USERNAME", help="Only this user's jobs (an administrator sees everyone's).")
@click.option(
    "-n", "--num", type=click.IntRange(1, MAX_LIST), default=50, show_default=True, help="At most so many."
)
@click.option("--json", "as_json", is_flag=True, help="The jobs as a JSON array (the server's job objects).")
@server_options
def jobs(target: Target, status: str | None, user: str | None, num: int, as_json: bool) -> None:
    """List your jobs, newest first (an administrator: everyone's).

    --status and --user are applied by this command, to the newest 10,000 jobs the server lists
    (its jobs list has no filter). --json prints the server's job objects for scripts.
    """
    api, _login = target.open()
    with api:
        found = list_jobs(api, status=(status or "").upper(), user=user or "", num=num)
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif found:
        render_table(found)
    else:
        click.echo("no jobs", err=True)


@click.command()
@click.argument("job_id", metavar="JOB")
@server_options
def cancel(target: Target, job_id: str) -> None:
    """Cancel JOB (it ends CANCELLED once its kernel has stopped)."""
    api, _login = target.open()
    with api:
        api.post(f"/admin/notebooks/jobs/{job_id}/cancel")
    click.echo(f"cancel requested: {job_id}", err=True)


@click.command()
@click.argument("job_id", metavar="JOB")
@click.argument("out", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--html", is_flag=True, help="The notebook rendered as HTML instead of the .ipynb.")
@server_options
def output(target: Target, job_id: str, out: Path | None, html: bool) -> None:
    """Download the executed notebook of JOB to OUT (use "-" for stdout).

    OUT defaults to JOB.ipynb (JOB.html with --html). A failed or cancelled job has the outputs of the
    cells that ran.
    """
    api, _login = target.open()
    with api:
        job = api.get(f"/admin/notebooks/jobs/{job_id}")
        if job.get("status") not in ENDED:
            raise ClientError(
                f"job {job_id} is {job.get('status')}: no output yet (nbjobs logs --follow {job_id} waits)"
            )
        suffix = "/output/html" if html else "/output"
        data = api.download(f"/admin/notebooks/jobs/{job_id}{suffix}")
    if str(out) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    path = out or Path(f"{job_id}.html" if html else f"{job_id}.ipynb")
    path.write_bytes(data)
    click.echo(f"wrote {path}", err=True)
