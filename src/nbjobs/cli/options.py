"""Options several sub-commands share, defined once so their --help says the same thing."""

from __future__ import annotations

from pathlib import Path

import click

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The server's data directory. [env NBJOBS_DATA_DIR; default ./var]",
)
