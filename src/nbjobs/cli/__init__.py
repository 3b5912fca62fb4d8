"""The ``nbjobs`` command line. Each sub-command lives in its own module of this package."""

from __future__ import annotations

import importlib

import click

from nbjobs import __version__

# name -> module of this package defining a click command of that name. Loaded on first use, so
# `nbjobs run` imports the engine only, never the server stack (web, store, dispatch).
_COMMANDS = {
    "run": "run",
    "serve": "serve",
    "db": "db",
    "users": "users",
    "tasks": "tasks",
    "runtimes": "runtimes",
    "worker": "worker",
    "webtools": "webtools",
    "notify": "notify",
    # the client of a running server (cli/client/): HTTP only, none of the server stack
    "login": "client.auth",
    "logout": "client.auth",
    "submit": "client.submit",
    "jobs": "client.jobs",
    "cancel": "client.jobs",
    "output": "client.jobs",
    "logs": "client.logs",
}


class _LazyGroup(click.Group):
    """A group whose sub-commands are imported only when named (or listed by --help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in _COMMANDS:
            module = importlib.import_module(f"nbjobs.cli.{_COMMANDS[cmd_name]}")
            command = getattr(module, cmd_name)
            assert isinstance(command, click.Command)
            self.add_command(command)
        return command


@click.group(
    cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="nbjobs")
def main() -> None:
    """nbjobs: run Jupyter notebooks as jobs, behind the ArcGIS Notebook Server administrator API.

    \b
    Start a server:         nbjobs serve
    Run one notebook here:  nbjobs run IN.ipynb OUT.ipynb -p alpha 0.6
    Use a running server:   nbjobs login https://HOST:PORT/arcgis, then
                            nbjobs submit IN.ipynb -p alpha 0.6 --wait, jobs, logs, output
    """
