"""``nbjobs run``: execute one notebook here and now, without a server (the papermill habit)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from nbjobs.errors import InvalidParameters
from nbjobs.execution.engine import ExecutionRequest, execute
from nbjobs.execution.processes import kill_process_tree
from nbjobs.models.jobs import Failure, FailureReason
from nbjobs.models.parameters import NotebookParameters, parse_cli_value, parse_parameters


class _Progress:
    """Listener that draws a per-cell progress bar on a TTY and enforces the whole-run deadline."""

    def __init__(self, show_bar: bool, timeout_minutes: float | None) -> None:
        self.kernel_pid = 0
        self.stopped_by: FailureReason | None = None
        self._bar: Any = None
        self._task: Any = None
        self._timer: threading.Timer | None = None
        if show_bar:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=_stderr_console(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("Starting kernel", total=100)
        if timeout_minutes:
            self._timer = threading.Timer(timeout_minutes * 60, self._stop, args=(FailureReason.TIMEOUT,))
            self._timer.daemon = True
            self._timer.start()

    def kernel_started(self, pid: int) -> None:
        self.kernel_pid = pid

    def progress(self, percent: int, message: str, cell_index: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=percent, description=message)

    def should_stop(self) -> bool:
        return self.stopped_by is not None

    def _stop(self, reason: FailureReason) -> None:
        self.stopped_by = reason
        if self.kernel_pid:  # interrupt, then make sure: same staging as the server, compressed
            kill_process_tree(self.kernel_pid, signal.SIGINT)
            threading.Timer(5, kill_process_tree, args=(self.kernel_pid,)).start()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._bar is not None:
            self._bar.stop()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _collect_parameters(
    params: tuple[tuple[str, str], ...],
    raw: tuple[tuple[str, str], ...],
    files: tuple[Path, ...],
    inline: str | None,
) -> NotebookParameters:
    """Files, then the inline object, then -p and -r, each parsed once; a later source wins a name."""
    merged = NotebookParameters()
    try:
        for path in files:
            merged = merged.merged(parse_parameters(path.read_text()))
        if inline:
            merged = merged.merged(parse_parameters(inline))
    except InvalidParameters as exc:
        raise click.BadParameter(exc.message) from exc
    flags: dict[str, Any] = {name: parse_cli_value(value) for name, value in params}
    flags.update(dict(raw))
    try:
        return merged.merged(parse_parameters(flags))
    except InvalidParameters as exc:
        raise click.BadParameter(exc.message) from exc


@click.command()
@click.argument("notebook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("output", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-p",
    "--parameters",
    "params",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="A parameter; VALUE becomes int, float, bool or None when it reads as one, else str.",
)
@click.option(
    "-r",
    "--parameters-raw",
    "raw",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="A parameter whose VALUE is always a string.",
)
@click.option(
    "-f",
    "--parameters-file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON file holding an object of parameters.",
)
@click.option(
    "-j",
    "--parameters-json",
    "inline",
    metavar="JSON",
    help="Parameters as a JSON object, as ArcGIS notebookParameters: '{\"x\": 1}'.",
)
@click.option(
    "-k",
    "--kernel",
    "kernel_name",
    default="",
    help="Kernel to use instead of the notebook's own kernelspec.",
)
@click.option(
    "--cwd",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Working directory of the kernel. [default: the notebook's folder]",
)
@click.option(
    "--execution-timeout",
    type=int,
    metavar="SECONDS",
    help="Per-cell limit, as papermill's flag of the same name.",
)
@click.option(
    "--timeout",
    "timeout_minutes",
    type=float,
    metavar="MINUTES",
    help="Whole-run limit, as ArcGIS executionTimeoutInMinutes.",
)
@click.option(
    "--save-injected-parameters/--drop-injected-parameters",
    default=True,
    help="Keep the injected-parameters cell in OUTPUT. [default: keep, as papermill]",
)
@click.option(
    "--progress-bar/--no-progress-bar",
    default=None,
    help="Per-cell progress bar on stderr. [default: on when stderr is a terminal]",
)
@click.option(
    "--max-cell-output",
    type=int,
    default=5 * 1024 * 1024,
    show_default=True,
    metavar="BYTES",
    help="Output kept per cell; the rest is dropped and the cut marked.",
)
def run(
    notebook: Path,
    output: Path | None,
    params: tuple[tuple[str, str], ...],
    raw: tuple[tuple[str, str], ...],
    files: tuple[Path, ...],
    inline: str | None,
    kernel_name: str,
    cwd: Path | None,
    execution_timeout: int | None,
    timeout_minutes: float | None,
    save_injected_parameters: bool,
    progress_bar: bool | None,
    max_cell_output: int,
) -> None:
    """Execute NOTEBOOK in a fresh kernel and write the executed notebook to OUTPUT.

    OUTPUT defaults to NOTEBOOK's name with ".out.ipynb"; use "-" for stdout. The exit status is 0
    when every cell ran, 1 when the run failed (the executed notebook is written either way).

    \b
    Example:
      nbjobs run report.ipynb out.ipynb -p region west -p year 2026
    """
    parameters = _collect_parameters(params, raw, files, inline)
    if output is None:
        output = notebook.with_name(notebook.stem + ".out.ipynb")
    request = ExecutionRequest(
        notebook=notebook.read_bytes(),
        parameters=parameters,
        kernel_name=kernel_name,
        save_injected_parameters=save_injected_parameters,
        cwd=str((cwd or notebook.parent).resolve()),
        cell_timeout_seconds=execution_timeout,
        max_cell_output_bytes=max_cell_output,
        max_notebook_output_bytes=max(max_cell_output * 10, max_cell_output),
    )
    show_bar = sys.stderr.isatty() if progress_bar is None else progress_bar
    listener = _Progress(show_bar, timeout_minutes)
    try:
        outcome = execute(request, listener)
    finally:
        listener.close()
    if outcome.notebook is not None:
        if str(output) == "-":
            sys.stdout.buffer.write(outcome.notebook)
        else:
            output.write_bytes(outcome.notebook)
            click.echo(f"wrote {output}", err=True)
    failure = outcome.failure
    if listener.stopped_by == FailureReason.TIMEOUT:
        failure = Failure(
            FailureReason.TIMEOUT, f"the run exceeded its time limit of {timeout_minutes} minutes"
        )
    if outcome.output_truncated:
        click.echo(f"output truncated in cells {outcome.truncated_cells}", err=True)
    if failure is not None:
        where = f" (cell {failure.cell_index})" if failure.cell_index is not None else ""
        click.echo(f"FAILED [{failure.reason}]{where}: {failure.message}", err=True)
        sys.exit(1)
    click.echo(f"COMPLETED: {outcome.cells_executed} cells executed", err=True)
