"""The client's pieces that need no server: the stored login, the one-line errors, -p values, URLs."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import click
import httpx
import pytest

from nbjobs.cli.client import config
from nbjobs.cli.client.api import Api, candidate_bases
from nbjobs.cli.client.errors import ClientError, ServerError, Unreachable, check_envelope, transport_error
from nbjobs.cli.client.live import ending_line, exit_status
from nbjobs.cli.client.params import notebook_parameters
from nbjobs.cli.papermill_params import collect_parameters

# -- the stored login ----------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_login_file_is_user_only_and_round_trips(tmp_path: Path):
    path = config.login_path({"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert path == tmp_path / "cfg" / "nbjobs" / "login.json"
    login = config.Login("https://h:1/arcgis", "tok", "alice", 123, "/ca.pem", False)
    old_umask = os.umask(0o022)  # the usual umask would leave a new file 0644
    try:
        config.save(path, login)
    finally:
        os.umask(old_umask)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert config.load(path) == login
    assert [p.name for p in path.parent.iterdir()] == ["login.json"]  # no temporary left behind


def test_an_existing_loose_directory_is_tightened_and_the_file_replaced(tmp_path: Path):
    folder = tmp_path / "nbjobs"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    path = folder / "login.json"
    path.write_text("{}")
    os.chmod(path, 0o644)
    config.save(path, config.Login("https://h/arcgis", "new"))
    assert _mode(folder) == 0o700
    assert _mode(path) == 0o600  # a new file renamed over the old one, not the old one rewritten
    assert config.load(path) == config.Login("https://h/arcgis", "new")


def test_config_dir_default_and_relative_xdg_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.config_dir({}) == tmp_path / ".config" / "nbjobs"
    assert config.config_dir({"XDG_CONFIG_HOME": "relative/dir"}) == tmp_path / ".config" / "nbjobs"


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"url": "x"}', '{"token": "t"}'])
def test_an_unreadable_login_is_none(tmp_path: Path, text: str):
    path = tmp_path / "login.json"
    path.write_text(text)
    assert config.load(path) is None
    assert config.load(tmp_path / "absent.json") is None


def test_remove(tmp_path: Path):
    path = tmp_path / "nbjobs" / "login.json"
    config.save(path, config.Login("https://h/arcgis", "t"))
    assert config.remove(path) is True
    assert config.remove(path) is False


# -- one line per error ----------------------------------------------------------------------------------


def test_admin_envelope_is_one_line_with_the_code():
    with pytest.raises(ServerError) as caught:
        check_envelope(
            {"status": "error", "messages": ["Job 'j1' does not exist or is inaccessible."], "code": 404}
        )
    assert caught.value.message == "error 404: Job 'j1' does not exist or is inaccessible."
    assert caught.value.exit_code == 1


def test_portal_envelope_keeps_its_details_on_the_same_line():
    envelope = {"error": {"code": 400, "message": "Unable to generate token.",
                          "details": ["Invalid username\nor password."]}}  # fmt: skip
    with pytest.raises(ServerError) as caught:
        check_envelope(envelope)
    assert caught.value.message == "error 400: Unable to generate token. (Invalid username or password.)"
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("answer", [{"status": "success"}, {"jobId": "j"}, [], "text", {"error": "a string"}])
def test_other_answers_pass(answer: object):
    assert check_envelope(answer) == answer


def test_server_error_shows_without_the_click_prefix(capsys: pytest.CaptureFixture[str]):
    ServerError(498, "Invalid token.").show()
    assert capsys.readouterr().err == "error 498: Invalid token.\n"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_a_refused_connection_is_one_line_exit_2():
    url = f"https://127.0.0.1:{_closed_port()}/arcgis"
    with Api(url) as api, pytest.raises(Unreachable) as caught:
        api.get("/sharing/rest/info")
    assert caught.value.message == f"cannot reach {url}: connection refused"
    assert caught.value.exit_code == 2


def test_transport_error_of_a_real_refusal():
    port = _closed_port()
    try:
        httpx.get(f"http://127.0.0.1:{port}/")
    except httpx.ConnectError as exc:
        assert transport_error("http://x", exc).message == "cannot reach http://x: connection refused"
    else:
        pytest.fail("nothing listens on the port, the request should fail")


def test_exit_status_as_nbjobs_run():
    assert exit_status("COMPLETED", None) == 0
    assert exit_status("FAILED", {"reason": "cell_error"}) == 1
    assert exit_status("CANCELLED", {"reason": "cancelled"}) == 1
    assert exit_status("FAILED", {"reason": "kernel_died"}) == 138
    failure = {"reason": "cell_error", "message": "ValueError: boom", "cellIndex": 1}
    assert ending_line("j1", "FAILED", failure) == "FAILED [cell_error] (cell 1): ValueError: boom"
    assert ending_line("j1", "COMPLETED", None) == "COMPLETED: job j1"


# -- -p values: exactly nbjobs run's ---------------------------------------------------------------------

VALUES = (("i", "7"), ("f", "1.5"), ("e", "1e3"), ("t", "True"), ("lower", "true"), ("n", "None"),
          ("s", "west"), ("neg", "-3"), ("inf", "inf"), ("u", "1_000"), ("x", "_1"))  # fmt: skip


def test_p_values_are_typed_as_nbjobs_run_types_them():
    sent = json.loads(notebook_parameters(VALUES))
    run_would = dict(collect_parameters(VALUES, (), (), (), (), None))
    assert sent == run_would
    assert sent == {"i": 7, "f": 1.5, "e": 1000.0, "t": True, "lower": "true", "n": None, "s": "west",
                    "neg": -3, "inf": float("inf"), "u": 1000, "x": "_1"}  # fmt: skip
    assert type(sent["i"]) is int and type(sent["e"]) is float


def test_sources_merge_in_run_order(tmp_path: Path):
    file = tmp_path / "p.yaml"
    file.write_text("a: 1\nb: from-file\nd: 2026-01-02\n")
    sent = json.loads(notebook_parameters((("b", "2"),), (("c", "3"),), (file,), ("a: 5",), '{"c": 9}'))
    assert sent == {"a": 5, "b": 2, "c": "3", "d": "2026-01-02"}


def test_no_parameters_send_nothing():
    assert notebook_parameters(()) == ""


@pytest.mark.parametrize(
    ("params", "inline", "words"),
    [((("class", "1"),), None, "not a valid Python identifier"), ((), "[1]", "JSON object")],
)
def test_bad_parameters_are_usage_errors(params, inline, words):
    with pytest.raises(click.BadParameter, match=words):
        notebook_parameters(params, inline=inline)


# -- the server URL ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("https://h:8443/arcgis", "https://h:8443/arcgis"),
        ("https://h:8443/arcgis/", "https://h:8443/arcgis"),
        ("https://h:8443/arcgis/admin", "https://h:8443/arcgis"),
        ("https://h:8443/arcgis/sharing/rest/generateToken", "https://h:8443/arcgis"),
        ("https://h:8443/arcgis/app/jobs", "https://h:8443/arcgis"),
        ("https://h:8443", "https://h:8443"),
        ("h:8443/nb", "https://h:8443/nb"),
        ("https://h/administrators", "https://h/administrators"),  # not an /admin tail
    ],
)
def test_candidate_bases(given: str, base: str):
    assert candidate_bases(given) == [base]


@pytest.mark.parametrize("bad", ["ftp://h/x", "https://", "://"])
def test_not_a_url(bad: str):
    with pytest.raises(ClientError, match="not a server URL"):
        candidate_bases(bad)


# -- what the client imports -------------------------------------------------------------------------------

SERVER_STACK = ("nbjobs.web", "nbjobs.store", "nbjobs.dispatch", "nbjobs.service", "nbjobs.execution",
                "nbjobs.roots", "nbjobs.telemetry", "fastapi", "sqlalchemy", "nbclient")  # fmt: skip


def test_the_client_imports_nothing_of_the_server_stack_and_httpx_only_when_used():
    code = (
        "import sys\n"
        "from nbjobs.cli import main\n"
        "for name in ('login', 'logout', 'submit', 'jobs', 'logs', 'cancel', 'output'):\n"
        "    main.get_command(None, name)\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = done.stdout.split()
    assert "nbjobs.cli.client.submit" in loaded
    assert [m for m in loaded if m.startswith(SERVER_STACK)] == []
    assert "httpx" not in loaded  # `nbjobs --help` loads every command: httpx waits for a request


@pytest.mark.parametrize("command", ["login", "logout", "submit", "jobs", "logs", "cancel", "output"])
def test_docs_cli_md_shows_the_true_help(command: str):
    from click.testing import CliRunner

    from nbjobs.cli import main

    shown = CliRunner().invoke(
        main, [command, "--help"], prog_name="nbjobs", terminal_width=98
    )  # COLUMNS=100
    assert shown.exit_code == 0, shown.output
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    assert f"$ nbjobs {command} --help\n{shown.output.rstrip()}\n```" in docs, (
        f"docs/cli.md: {command} --help"
    )
