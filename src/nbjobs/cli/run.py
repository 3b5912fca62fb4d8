"""``nbjobs run``: execute one notebook here and now, without a server (the papermill habit)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nbjobs.cli.papermill_params import collect_parameters, parameter_options
from nbjobs.execution.processes import kill_process_tree
from nbjobs.models.jobs import Failure, FailureReason

EXIT_FAILED = 1
EXIT_KERNEL_DIED = 138  # papermill's status for a DeadKernelError, so scripts can tell the two apart

if TYPE_CHECKING:
    from nbjobs.execution.kernels import StartingKernel, WarmKernel


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

    def progress(self, percent: int, message: str, cell_index: int, code_cells: int = 0) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=percent, description=message)

    def output(self, cell_index: int, name: str, text: str) -> None:
        pass  # the output notebook has it; the server's jobs stream it (docs/jobs.md)

    def cell_ended(self, cell_index: int, ok: bool) -> None:
        pass

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


def _launch_kernel(notebook: bytes, kernel_name: str, cwd: str) -> StartingKernel | None:
    """Start the kernel the notebook names before nbclient is even imported, or None (the engine then
    starts it and reports why it cannot). The engine checks the name again and discards a wrong guess."""
    from nbjobs.execution.kernels import StartingKernel, kernel_exists, resolve_kernel_name

    if not kernel_name:
        try:
            kernelspec = json.loads(notebook).get("metadata", {}).get("kernelspec")
            named = kernelspec.get("name") if isinstance(kernelspec, dict) else None
        except (ValueError, AttributeError):
            return None  # not a notebook: the engine says so
        kernel_name = named if isinstance(named, str) and named else "python3"
    name = resolve_kernel_name(kernel_name)
    if not kernel_exists(name):
        return None
    try:
        return StartingKernel.launch(name, cwd)
    except Exception:  # the engine's own start reports the failure
        return None


def _ready(starting: StartingKernel | None) -> WarmKernel | None:
    if starting is None:
        return None
    try:
        return starting.ready()
    except Exception:  # died while starting: the engine's own start reports the failure
        return None


@click.command()
@click.argument("notebook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("output", required=False, type=click.Path(dir_okay=False, path_type=Path))
@parameter_options
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
    help="Working directory of the kernel. [default: the directory nbjobs run is called from, as papermill]",
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
    "--report-mode/--no-report-mode",
    default=False,
    help="Hide the code cells' input in OUTPUT (jupyter.source_hidden), as papermill. [default: off]",
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
    yamls: tuple[str, ...],
    base64s: tuple[str, ...],
    inline: str | None,
    kernel_name: str,
    cwd: Path | None,
    execution_timeout: int | None,
    timeout_minutes: float | None,
    save_injected_parameters: bool,
    report_mode: bool,
    progress_bar: bool | None,
    max_cell_output: int,
) -> None:
    """Execute NOTEBOOK in a fresh kernel and write the executed notebook to OUTPUT.

    OUTPUT defaults to NOTEBOOK's name with ".out.ipynb"; use "-" for stdout. The executed notebook
    is written either way; the exit status says how the run ended:

    \b
      0    every cell ran, or a cell ended the run with sys.exit() / sys.exit(0)
      1    the run failed: a cell raised, timed out, the kernel was not found, bad input
      2    bad usage (an unknown option, unreadable parameters)
      138  the kernel died (or could not be started), as papermill's 138

    The kernel's working directory is the directory nbjobs run is called from, papermill's default,
    so a notebook's relative paths mean what they meant under papermill (--cwd DIR to choose; jobs
    on a server keep running in their own job directory).

    \b
    Example:
      nbjobs run report.ipynb out.ipynb -p region west -p year 2026
    """
    parameters = collect_parameters(params, raw, files, yamls, base64s, inline)
    if output is None:
        output = notebook.with_name(notebook.stem + ".out.ipynb")
    data = notebook.read_bytes()
    workdir = str((cwd or Path.cwd()).resolve())
    starting = _launch_kernel(data, kernel_name, workdir)  # it boots while the engine is imported

    from nbjobs.execution.engine import ExecutionRequest, execute

    request = ExecutionRequest(
        notebook=data,
        parameters=parameters,
        kernel_name=kernel_name,
        save_injected_parameters=save_injected_parameters,
        cwd=workdir,
        cell_timeout_seconds=execution_timeout,
        max_cell_output_bytes=max_cell_output,
        max_notebook_output_bytes=max(max_cell_output * 10, max_cell_output),
        report_mode=report_mode,
    )
    show_bar = sys.stderr.isatty() if progress_bar is None else progress_bar
    listener = _Progress(show_bar, timeout_minutes)
    warm = None
    try:
        warm = _ready(starting)
        outcome = execute(request, listener, warm)
    finally:
        listener.close()
        if warm is not None and warm.alive():  # the engine did not take it (bad input, other kernel)
            warm.discard()
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
    for warning in outcome.warnings:
        click.echo(f"warning: {warning}", err=True)
    if outcome.output_truncated:
        click.echo(f"output truncated in cells {outcome.truncated_cells}", err=True)
    if failure is not None:
        where = f" (cell {failure.cell_index})" if failure.cell_index is not None else ""
        click.echo(f"FAILED [{failure.reason}]{where}: {failure.message}", err=True)
        sys.exit(EXIT_KERNEL_DIED if failure.reason == FailureReason.KERNEL_DIED else EXIT_FAILED)
    click.echo(f"COMPLETED: {outcome.cells_executed} cells executed", err=True)
