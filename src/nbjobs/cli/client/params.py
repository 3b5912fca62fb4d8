"""``submit``'s parameters: the flags of ``nbjobs run`` (papermill's typing of ``-p``), sent as the
``notebookParameters`` JSON object, checked here by the same parser the server uses."""

from __future__ import annotations

import json
from pathlib import Path

from nbjobs.cli.papermill_params import collect_parameters


def notebook_parameters(
    params: tuple[tuple[str, str], ...],
    raw: tuple[tuple[str, str], ...] = (),
    files: tuple[Path, ...] = (),
    yamls: tuple[str, ...] = (),
    inline: str | None = None,
    base64s: tuple[str, ...] = (),
) -> str:
    """The ``notebookParameters`` JSON text of `nbjobs run`'s flags (one implementation for both:
    ``papermill_params.collect_parameters``). Bad input raises ``click.BadParameter`` (exit status 2)."""
    values = collect_parameters(params, raw, files, yamls, base64s, inline).to_wire()
    # json.dumps writes inf and nan as Infinity and NaN, which the server's json.loads reads back
    return json.dumps(values) if values else ""
