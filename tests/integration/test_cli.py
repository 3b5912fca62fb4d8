"""The command line as users type it: ``nbjobs run`` (papermill habit) and ``nbjobs db upgrade``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import NOTEBOOKS

NBJOBS = str(Path(sys.executable).with_name("nbjobs"))


def nbjobs(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([NBJOBS, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def printed(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "".join(
        "".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]
    )


@pytest.mark.kernel
def test_run_injects_typed_parameters_and_writes_the_output(tmp_path):
    out = tmp_path / "out.ipynb"
    result = nbjobs(
        "run",
        str(NOTEBOOKS / "parameters.ipynb"),
        str(out),
        "-p",
        "count",
        "7",
        "-p",
        "flag",
        "True",
        "-r",
        "name",
        "42",
        "-j",
        '{"items": [1, 2]}',
        "--no-progress-bar",
    )
    assert result.returncode == 0, result.stderr
    assert "'42' 7 0.0 True [1, 2] {} None" in printed(out)
    assert "COMPLETED" in result.stderr


@pytest.mark.kernel
def test_run_exits_1_and_still_writes_the_notebook_when_a_cell_fails(tmp_path):
    out = tmp_path / "out.ipynb"
    result = nbjobs("run", str(NOTEBOOKS / "raises.ipynb"), str(out))
    assert result.returncode == 1
    assert "FAILED [cell_error] (cell 1): ValueError: boom at cell 1" in result.stderr
    assert "before" in printed(out)


@pytest.mark.kernel
def test_run_whole_run_timeout(tmp_path):
    result = nbjobs("run", str(NOTEBOOKS / "sleeps.ipynb"), str(tmp_path / "o.ipynb"), "--timeout", "0.03")
    assert result.returncode == 1 and "FAILED [timeout]" in result.stderr


def test_run_rejects_a_non_object_parameter_file(tmp_path):
    params = tmp_path / "p.json"
    params.write_text("[1, 2]")
    result = nbjobs("run", str(NOTEBOOKS / "trivial.ipynb"), "-f", str(params))
    assert result.returncode == 2 and "must be a JSON object" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_reports_a_file_that_is_not_a_notebook(tmp_path):
    result = nbjobs("run", str(NOTEBOOKS / "not_a_notebook.ipynb"), str(tmp_path / "o.ipynb"))
    assert result.returncode == 1 and "FAILED [invalid_notebook]" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_creates_then_is_a_no_op(tmp_path):
    first = nbjobs("db", "upgrade", "--data-dir", str(tmp_path))
    assert first.returncode == 0 and "empty ->" in first.stdout
    second = nbjobs("db", "upgrade", "--data-dir", str(tmp_path))
    head = first.stdout.strip().rsplit(" ", 1)[-1]
    assert second.returncode == 0 and second.stdout.strip().endswith(f"{head} -> {head}")


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["run"],
        ["serve"],
        ["db"],
        ["db", "upgrade"],
        ["worker"],
        ["users"],
        ["runtimes"],
        ["tasks"],
        ["webtools"],
    ],
)
def test_help_is_complete(command):
    result = nbjobs(*command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout
