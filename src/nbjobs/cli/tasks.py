"""``nbjobs tasks``: read scheduled tasks and their runs from a data directory's database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from nbjobs.cli.options import data_dir_option

if TYPE_CHECKING:  # imported where used, to keep `nbjobs --help` fast
    from nbjobs.models.portal_stores import TaskStore
    from nbjobs.roots.operator import Operator

_data_dir = data_dir_option


def _store(data_dir: Path | None) -> tuple[TaskStore, Operator]:
    from nbjobs.errors import NbJobsError
    from nbjobs.roots.operator import Operator
    from nbjobs.settings import load_settings

    try:
        operator = Operator.open(load_settings(data_dir=data_dir))
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    return operator.tasks, operator


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ms else "-"


@click.group()
def tasks() -> None:
    """List scheduled notebook tasks and their runs."""


@tasks.command("list")
@click.option("--user", "owner", help="Only this user's tasks.")
@_data_dir
def list_tasks(owner: str | None, data_dir: Path | None) -> None:
    """One line per task: id, owner, state, schedule, next run, title."""
    task_store, store = _store(data_dir)
    try:
        for t in task_store.list(owner):
            cron = " ".join((t.minute, t.hour, t.day_of_month, t.month, t.day_of_week))
            click.echo(
                f"{t.task_id}  {t.owner:<12} {t.state:<9} {cron:<20} {t.time_zone:<14} "
                f"next {_when(t.next_fire)}  {t.title}"
            )
    finally:
        store.close()


@tasks.command("show")
@click.argument("task_id")
@_data_dir
def show(task_id: str, data_dir: Path | None) -> None:
    """The task TASK_ID as JSON."""
    import dataclasses

    task_store, store = _store(data_dir)
    try:
        task = task_store.get(task_id)
        if task is None:
            raise click.ClickException(f"Task '{task_id}' does not exist.")
        click.echo(json.dumps(dataclasses.asdict(task), indent=2, default=str))
    finally:
        store.close()


@tasks.command("runs")
@click.argument("task_id")
@click.option("--num", default=30, show_default=True, help="How many runs, newest first.")
@_data_dir
def runs(task_id: str, num: int, data_dir: Path | None) -> None:
    """One line per run of TASK_ID: occasion, status, job id, result."""
    task_store, store = _store(data_dir)
    try:
        if task_store.get(task_id) is None:
            raise click.ClickException(f"Task '{task_id}' does not exist.")
        for r in task_store.runs(task_id, num):
            click.echo(
                f"{r.run_id}  {_when(r.scheduled_for)}  {r.status:<9} {r.job_id or '-':<33} {r.result}"
            )
    finally:
        store.close()
