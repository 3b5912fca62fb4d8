"""``nbjobs submit NOTEBOOK``: run a local notebook as a job on the server, optionally waiting for it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from nbjobs.cli.client.api import Api
from nbjobs.cli.client.errors import ClientError
from nbjobs.cli.client.items import item_for, username_of
from nbjobs.cli.client.live import JobFollower, ending_line
from nbjobs.cli.client.params import notebook_parameters
from nbjobs.cli.client.progress import ProgressDisplay
from nbjobs.cli.client.target import Target, server_options
from nbjobs.cli.papermill_params import parameter_options


def runtime_id_of(api: Api, wanted: str) -> str:
    """The id of the runtime named (or with the id) ``wanted``; a clear error listing the choices."""
    runtimes = api.get("/admin/notebooks/runtimes").get("runtimes", [])
    for runtime in runtimes:
        if wanted in (runtime.get("id"), runtime.get("name")):
            return str(runtime["id"])
    for runtime in runtimes:
        if str(runtime.get("name", "")).lower() == wanted.lower():
            return str(runtime["id"])
    names = ", ".join(repr(r.get("name")) for r in runtimes) or "none"
    raise ClientError(f"no runtime named {wanted!r} on the server (runtimes: {names})")


def wait_for(api: Api, job_id: str, *, bar: bool) -> int:
    """Follow the job to its end, drawing its progress; its exit status."""
    follower = JobFollower(api, job_id)
    display = ProgressDisplay(job_id, bar=bar)
    try:
        for snapshot in follower.snapshots():
            display.update(snapshot)
    finally:
        display.close()
    click.echo(ending_line(job_id, follower.status, follower.failure), err=True)
    return follower.exit_status


@click.command()
@click.argument("notebook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@parameter_options
@click.option("--wait", is_flag=True, help="Wait for the job to end; the exit status then says how.")
@click.option("--runtime", metavar="NAME", help="The runtime (name or id) to run in. [default: the server's]")
@click.option(
    "--timeout",
    "timeout_minutes",
    type=click.IntRange(min=1),
    metavar="MINUTES",
    help="Whole-run limit, as ArcGIS executionTimeoutInMinutes. [default: the server's]",
)
@click.option(
    "--save-injected-parameters/--drop-injected-parameters",
    default=True,
    help="Keep the injected-parameters cell in the output. [default: keep, as nbjobs run]",
)
@click.option(
    "--progress-bar/--no-progress-bar",
    default=None,
    help="With --wait, a per-cell progress bar on stderr. [default: on when stderr is a terminal]",
)
@server_options
def submit(
    target: Target,
    notebook: Path,
    params: tuple[tuple[str, str], ...],
    raw: tuple[tuple[str, str], ...],
    files: tuple[Path, ...],
    yamls: tuple[str, ...],
    base64s: tuple[str, ...],
    inline: str | None,
    wait: bool,
    runtime: str | None,
    timeout_minutes: int | None,
    save_injected_parameters: bool,
    progress_bar: bool | None,
) -> None:
    """Run NOTEBOOK on the server as a job and print its id.

    The notebook is uploaded as one of your items, or an item of yours holding the same bytes is
    reused (found by its type keyword nbjobs:sha256:<hex>). The item is left as it is: the executed
    notebook is the job's output (nbjobs output JOB).

    \b
    With --wait the exit status says how the job ended, as nbjobs run:
      0    COMPLETED
      1    FAILED or CANCELLED (and any error the server answered)
      2    bad usage, not signed in, the server unreachable or its certificate not trusted
      138  the kernel died

    \b
    Example:
      nbjobs submit report.ipynb -p region west -p year 2026 --wait
    """
    parameters = notebook_parameters(params, raw, files, yamls, inline, base64s)
    data = notebook.read_bytes()
    api, login = target.open()
    with api:
        runtime_id = runtime_id_of(api, runtime) if runtime else ""  # a wrong name: before any upload
        username = username_of(api, login.username)
        item_id, reused = item_for(api, username, notebook, data)
        fields: dict[str, Any] = {
            "itemId": item_id,
            "updatePortalItem": "false",
            "saveInjectedParameters": "true" if save_injected_parameters else "false",
        }
        if parameters:
            fields["notebookParameters"] = parameters
        if timeout_minutes:
            fields["executionTimeoutInMinutes"] = timeout_minutes
        if runtime_id:
            fields["notebookRuntimeId"] = runtime_id
        answer = api.post("/admin/notebooks/executeNotebook", fields)
        job_id = str(answer.get("jobId", ""))
        if not job_id:
            raise ClientError("the server did not return a job id")
        how = "reused item" if reused else "uploaded item"
        click.echo(f"submitted {notebook.name} ({how} {item_id}) as job {job_id}", err=True)
        click.echo(job_id)
        sys.stdout.flush()
        if wait:
            bar = sys.stderr.isatty() if progress_bar is None else progress_bar
            sys.exit(wait_for(api, job_id, bar=bar))
