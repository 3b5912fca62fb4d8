"""``submit``'s parameters: the flags of ``nbjobs run`` (papermill's typing of ``-p``), sent as the
``notebookParameters`` JSON object, checked here by the same parser the server uses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from nbjobs.cli.papermill_params import collect_parameters

F = TypeVar("F", bound=Callable[..., Any])


def notebook_parameters(
    params: tuple[tuple[str, str], ...],
    raw: tuple[tuple[str, str], ...] = (),
    files: tuple[Path, ...] = (),
    yamls: tuple[str, ...] = (),
    inline: str | None = None,
) -> str:
    """The ``notebookParameters`` JSON text of `nbjobs run`'s flags (one implementation for both:
    ``papermill_params.collect_parameters``). Bad input raises ``click.BadParameter`` (exit status 2)."""
    values = collect_parameters(params, raw, files, yamls, (), inline).to_wire()
    # json.dumps writes inf and nan as Infinity and NaN, which the server's json.loads reads back
    return json.dumps(values) if values else ""


def parameter_options(command: F) -> F:
    """-p, -r, -f, -y, -j as `nbjobs run` has them."""
    options = [
        click.option(
            "-p",
            "--parameters",
            "params",
            nargs=2,
            multiple=True,
            metavar="NAME VALUE",
            help="A parameter, typed as papermill's -p: True, False, None, then int, then float, else str.",
        ),
        click.option(
            "-r",
            "--parameters-raw",
            "raw",
            nargs=2,
            multiple=True,
            metavar="NAME VALUE",
            help="A parameter whose VALUE is always a string.",
        ),
        click.option(
            "-f",
            "--parameters-file",
            "files",
            multiple=True,
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="A YAML (or JSON) file holding a mapping of parameters, as papermill's -f.",
        ),
        click.option(
            "-y",
            "--parameters-yaml",
            "yamls",
            multiple=True,
            metavar="YAML",
            help="Parameters as a YAML mapping, as papermill's -y: 'x: 1'.",
        ),
        click.option(
            "-j",
            "--parameters-json",
            "inline",
            metavar="JSON",
            help="Parameters as a JSON object, as ArcGIS notebookParameters: '{\"x\": 1}'.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command
