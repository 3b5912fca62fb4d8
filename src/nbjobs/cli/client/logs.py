"""``nbjobs logs JOB [--follow]``: the job's output as it runs (stdout to stdout, stderr to stderr)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import click

from nbjobs.cli.client.errors import ClientError, ServerError
from nbjobs.cli.client.live import JobFollower, OutputTail, ending_line, live_snapshot
from nbjobs.cli.client.target import Target, server_options


def write_snapshot(tail: OutputTail, snapshot: dict[str, Any]) -> None:
    """Print what a live snapshot's output adds; a retry's output follows a line naming its attempt."""
    if tail.new_attempt(snapshot.get("attempt")):
        sys.stdout.flush()
        click.echo(f"[attempt {tail.attempt}]", err=True)
    write_chunks(tail, snapshot.get("output") or [])


def write_chunks(tail: OutputTail, output: Iterable[dict[str, Any]]) -> None:
    """Print what ``output`` adds to ``tail``, marking text the server no longer kept."""
    for chunk in tail.new(output):
        stream = sys.stderr if chunk.name == "stderr" else sys.stdout
        text, dropped = chunk.text, chunk.dropped
        if dropped:
            cut = text.find("\n") + 1  # the kept text starts mid-line: show whole lines only
            if 0 < cut < len(text):
                text, dropped = text[cut:], dropped + cut
            stream.write(f"[... {dropped} characters not kept ...]\n")
        stream.write(text)
        stream.flush()


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends; exit as it ended.")
@server_options
def logs(target: Target, job_id: str, follow: bool) -> None:
    """Print the output JOB's cells have written so far (the last 16 KiB of each cell's streams).

    \b
    With --follow the output is streamed as the job writes it, until the job ends; the exit status
    then says how it ended, as nbjobs run: 0 COMPLETED, 1 FAILED or CANCELLED, 138 the kernel died.
    """
    api, _login = target.open()
    tail = OutputTail()
    with api:
        if not follow:
            try:
                snapshot = live_snapshot(api, job_id)
            except ServerError as exc:
                if exc.code == 404 and "Resource not found" in exc.message:
                    raise ClientError("this server has no live output API (…/jobs/<id>/live)") from None
                raise
            write_snapshot(tail, snapshot)
            return
        api.get(f"/admin/notebooks/jobs/{job_id}")  # an unknown job: one error line, before any stream
        follower = JobFollower(api, job_id)
        for snapshot in follower.snapshots():
            write_snapshot(tail, snapshot)
    click.echo(ending_line(job_id, follower.status, follower.failure), err=True)
    sys.exit(follower.exit_status)
