"""What ``submit --wait`` and ``logs --follow`` show while a job runs: a per-cell bar on a terminal,
status changes as lines otherwise (both on stderr, so stdout stays the job id or the output)."""

from __future__ import annotations

from typing import Any

import click


class ProgressDisplay:
    """Draws each snapshot: rich's bar (percent, "Executing cell 3 of 5", elapsed) or one line a status."""

    def __init__(self, job_id: str, *, bar: bool) -> None:
        self.job_id = job_id
        self._status = ""
        self._bar: Any = None
        self._task: Any = None
        if bar:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("SUBMITTED", total=100)

    def update(self, snapshot: dict[str, Any]) -> None:
        status = str(snapshot.get("status", ""))
        progress = snapshot.get("progress") or {}
        if self._bar is not None:
            message = progress.get("message") or status
            self._bar.update(self._task, completed=progress.get("percent") or 0, description=message)
        elif status and status != self._status:
            click.echo(f"{self.job_id}: {status}", err=True)
        self._status = status or self._status

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
