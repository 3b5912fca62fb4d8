"""The ``nbjobs`` command line. Each sub-command lives in its own module of this package."""

from __future__ import annotations

import click

from nbjobs import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nbjobs")
def main() -> None:
    """nbjobs: run Jupyter notebooks as jobs, behind the ArcGIS Notebook Server administrator API.

    \b
    Start a server:         nbjobs serve
    Run one notebook here:  nbjobs run IN.ipynb OUT.ipynb -p alpha 0.6
    """


def _register() -> None:
    from nbjobs.cli.db import db
    from nbjobs.cli.notify import notify
    from nbjobs.cli.run import run
    from nbjobs.cli.runtimes import runtimes
    from nbjobs.cli.serve import serve
    from nbjobs.cli.tasks import tasks
    from nbjobs.cli.users import users
    from nbjobs.cli.webtools import webtools
    from nbjobs.cli.worker import worker

    main.add_command(run)
    main.add_command(serve)
    main.add_command(db)
    main.add_command(users)
    main.add_command(tasks)
    main.add_command(runtimes)
    main.add_command(worker)
    main.add_command(webtools)
    main.add_command(notify)


_register()
