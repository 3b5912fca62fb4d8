"""``nbjobs webtools``: declare a notebook's web tool parameters, and check them as publishing will."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def webtools() -> None:
    """Web tools: notebooks published as geoprocessing services."""


@webtools.command("params")
@click.argument("notebook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--input",
    "-i",
    "inputs",
    multiple=True,
    metavar="NAME[:TYPE[:required]]",
    help="Register a variable of the parameters cell as an input (TYPE inferred when omitted).",
)
@click.option("--output", "-o", "outputs", multiple=True, metavar="NAME:TYPE",
              help="Register a variable the notebook sets as an output.")  # fmt: skip
@click.option("--check", is_flag=True, help="Only report the registered parameters; change nothing.")
def params(notebook: Path, inputs: tuple[str, ...], outputs: tuple[str, ...], check: bool) -> None:
    """Register web tool parameters in NOTEBOOK's metadata and show what a publish would see.

    \b
    Types: String, Long, Double, Boolean, Date, RecordSet, FeatureSet, File.
    nbjobs webtools params area.ipynb --input radius:Double --output area:Double
    """
    from nbjobs.errors import NbJobsError
    from nbjobs.service.webtools.params import analyze, register

    data = notebook.read_bytes()
    try:
        if check or not (inputs or outputs):
            analysis = analyze(data)
        else:
            data, analysis = register(data, inputs, outputs)
            notebook.write_bytes(data)
    except NbJobsError as exc:
        raise click.ClickException(exc.message) from exc
    for p in analysis.params.inputs:
        default = "" if p.default is None else f" = {p.default!r}"
        click.echo(f"input   {p.name}: {p.type.value}{' (required)' if p.required else ''}{default}")
    for p in analysis.params.outputs:
        click.echo(f"output  {p.name}: {p.type.value}")
    for text in analysis.warnings:
        click.echo(f"warning: {text}", err=True)
    for text in analysis.errors:
        click.echo(f"error: {text}", err=True)
    if analysis.errors:
        raise SystemExit(1)
