"""``nbjobs runtimes add|update|list``: the start method and preload of a runtime, over a data directory."""

from __future__ import annotations

import sys

from click.testing import CliRunner

from nbjobs.cli import main
from nbjobs.roots.operator import Operator
from nbjobs.settings import load_settings


def runtimes(tmp_path, *args: str):
    return CliRunner().invoke(main, ["runtimes", *args, "--data-dir", str(tmp_path)])


def listed(tmp_path) -> dict[str, list[str]]:
    result = runtimes(tmp_path, "list")
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.output.splitlines()]
    return {row[1]: row for row in rows}


def test_add_update_and_list_show_start_method_preload_and_status(tmp_path):
    added = runtimes(
        tmp_path, "add", "--name", "Geo", "--python", sys.executable,
        "--preload", "pandas, numpy,pandas", "--start-method", "SPAWN",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    rows = listed(tmp_path)
    assert rows["Python 3 Standard"][-3:] == ["fork", "-", "not reported"]
    assert rows["Geo"][-3:] == ["spawn", "pandas,numpy", "not reported"]

    operator = Operator.open(load_settings(data_dir=tmp_path))
    try:
        geo = operator.runtimes.lookup("Geo")
        operator.runtimes.record_start_status(geo.runtime_id, "fallback", "numpy\tstarts a thread\n")
    finally:
        operator.close()
    assert listed(tmp_path)["Geo"][-3:] == ["spawn", "pandas,numpy", "fallback (numpy starts a thread)"]

    unchanged = runtimes(tmp_path, "update", "Geo", "--max-cpu", "1")
    assert unchanged.exit_code == 0, unchanged.output
    assert listed(tmp_path)["Geo"][-1] == "fallback (numpy starts a thread)"  # how it starts is the same
    changed = runtimes(tmp_path, "update", "geo", "--start-method", "fork")
    assert changed.exit_code == 0, changed.output
    assert listed(tmp_path)["Geo"][-3:] == ["fork", "pandas,numpy", "not reported"]
    cleared = runtimes(tmp_path, "update", "Geo", "--preload", "")
    assert cleared.exit_code == 0, cleared.output
    assert listed(tmp_path)["Geo"][-3:] == ["fork", "-", "not reported"]


def test_bad_preload_or_start_method_is_a_clear_error(tmp_path):
    bad = runtimes(tmp_path, "add", "--name", "Bad", "--python", sys.executable, "--preload", "pandas,my-mod")
    assert bad.exit_code != 0 and "'my-mod' is not a Python module name" in bad.output
    bad = runtimes(tmp_path, "update", "Python 3 Standard", "--preload", "os..path")
    assert bad.exit_code != 0 and "'os..path' is not a Python module name" in bad.output
    bad = runtimes(tmp_path, "update", "Python 3 Standard", "--start-method", "forkserver")
    assert bad.exit_code == 2 and "'forkserver' is not one of 'fork', 'spawn'" in bad.output
    assert list(listed(tmp_path)) == ["Python 3 Standard"]
    assert listed(tmp_path)["Python 3 Standard"][-3:] == ["fork", "-", "not reported"]


def test_help_names_the_new_options():
    for command in ("add", "update"):
        result = CliRunner().invoke(main, ["runtimes", command, "--help"])
        assert result.exit_code == 0
        assert "--preload MODULES" in result.output and "--start-method [fork|spawn]" in result.output
