"""papermill's command-line parameter rules, for ``nbjobs run`` (papermill 2.6 ``cli.py``, ``iorw.py``).

- ``-p NAME VALUE``: ``True``/``False``/``None`` exactly (not ``true``/``null``), then whatever ``int()``
  accepts, then whatever ``float()`` accepts, else the string as typed (``resolve_type``).
- ``-y YAML`` and ``-f FILE``: YAML (so JSON too) read with PyYAML's safe loader minus its timestamp
  rule, so ``2026-01-02`` stays a string; an empty document means no parameters.

Only the command line uses these: the ArcGIS ``notebookParameters`` JSON has its own parser
(``nbjobs.models.parameters``). PyYAML is imported on first use, so a run without YAML never pays it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from nbjobs.errors import InvalidParameters
from nbjobs.models.parameters import NotebookParameters, parse_parameters

F = TypeVar("F", bound=Callable[..., Any])


def resolve_type(value: str) -> Any:
    """papermill's ``_resolve_type``: the typed value of one ``-p`` VALUE."""
    if value == "True":
        return True
    if value == "False":
        return False
    if value == "None":
        return None
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def load_yaml(text: str | bytes, source: str) -> dict[str, Any]:
    """The parameters a YAML document holds; ``ValueError`` naming ``source`` unless it is a mapping."""
    import yaml

    try:
        value = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(f"{source} is not valid YAML: {detail}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")
        raise ValueError(f"{source}: parameters must be a JSON object (a YAML mapping), got {kind}")
    return value


def _loader() -> Any:
    """papermill's ``NoDatesSafeLoader``: the safe loader without the implicit timestamp resolver."""
    import yaml

    class NoDatesSafeLoader(yaml.SafeLoader):
        yaml_implicit_resolvers = {
            key: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
            for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }

    return NoDatesSafeLoader


def collect_parameters(
    params: tuple[tuple[str, str], ...],
    raw: tuple[tuple[str, str], ...],
    files: tuple[Path, ...],
    yamls: tuple[str, ...],
    base64s: tuple[str, ...] = (),
    inline: str | None = None,
) -> NotebookParameters:
    """The parameters of ``nbjobs run`` and ``nbjobs submit``: papermill's order (-b, -f, -y, -p, -r),
    with the ArcGIS JSON -j before -p; a later source wins. Bad input: ``click.BadParameter`` (2)."""
    merged: dict[str, Any] = {}
    try:
        for encoded in base64s:
            try:
                merged.update(load_yaml(base64.b64decode(encoded, validate=True), "-b"))
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"-b is not base64-encoded YAML: {exc}") from None
        for path in files:
            merged.update(load_yaml(path.read_bytes(), str(path)))
        for text in yamls:
            merged.update(load_yaml(text, "-y"))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    try:
        result = parse_parameters(merged)
        if inline:
            result = result.merged(parse_parameters(inline))
        flags: dict[str, Any] = {name: resolve_type(value) for name, value in params}
        flags.update(dict(raw))
        return result.merged(parse_parameters(flags))
    except InvalidParameters as exc:
        raise click.BadParameter(exc.message) from exc


def parameter_options(command: F) -> F:
    """-p, -r, -f, -y, -b, -j: the parameter flags of `nbjobs run` and `nbjobs submit`."""
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
            "-b",
            "--parameters-base64",
            "base64s",
            multiple=True,
            metavar="BASE64",
            help="Parameters as base64-encoded YAML, as papermill's -b.",
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
