"""The client commands end to end: `nbjobs login/submit/jobs/logs/cancel/output` as subprocesses against
a real `nbjobs serve` over HTTPS (embedded mode: tests/e2e/conftest.py; Celery mode: a private server in
broker mode, PostgreSQL, Redis and an `nbjobs worker`, at the end of this file)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import certifi
import nbformat
import pytest

from tests.conftest import notebook_bytes
from tests.e2e.conftest import USER_PASSWORD, Server, Session, sign_in
from tests.waiting import eventually

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
NBJOBS = str(Path(sys.executable).parent / "nbjobs")
ENDED = ("COMPLETED", "FAILED", "CANCELLED")


@dataclass
class Cli:
    """`nbjobs` run with its own config dir (so its own stored login)."""

    config: Path
    cwd: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("NBJOBS_URL", "NBJOBS_TOKEN")}
        return {**env, "XDG_CONFIG_HOME": str(self.config), "COLUMNS": "200", **extra}

    def __call__(self, *args: str, input: str | None = None, timeout: float = 240, **env: str):
        return subprocess.run(
            [NBJOBS, *args], capture_output=True, text=True, input=input, timeout=timeout,
            env=self.env(**env), cwd=self.cwd, check=False,
        )  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [NBJOBS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=self.env(), cwd=self.cwd,
        )  # fmt: skip

    def notebook(self, name: str) -> Path:
        path = self.cwd / name
        path.write_bytes(notebook_bytes(name))
        return path

    @property
    def login_file(self) -> Path:
        return self.config / "nbjobs" / "login.json"


def make_cli(tmp: Path) -> Cli:
    (tmp / "work").mkdir(parents=True, exist_ok=True)
    return Cli(tmp / "config", tmp / "work")


def login(cli: Cli, url: str, cert: Path, username: str = "alice") -> None:
    done = cli(
        "login", url, "-u", username, "--password-stdin", "--ca-cert", str(cert), input=USER_PASSWORD + "\n"
    )
    assert done.returncode == 0, done.stderr
    assert f"signed in to {url.rstrip('/')}" in done.stderr or "signed in to https://" in done.stderr


@pytest.fixture(scope="module")
def cli(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    made = make_cli(tmp_path_factory.mktemp("cli"))
    login(made, server.url, server.cert)
    return made


def progressive_notebook(marker: Path) -> Path:
    """Prints five lines over ~1.5 s, waits for ``marker`` to exist, prints five more, and one on stderr."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import time, pathlib\n"
            "for i in range(5):\n    print(f'line {i}', flush=True)\n    time.sleep(0.3)"
        ),
        nbformat.v4.new_code_cell(
            f"while not pathlib.Path({str(marker)!r}).exists():\n    time.sleep(0.05)\n"
            "import sys\nprint('to stderr', file=sys.stderr, flush=True)\n"
            "for i in range(5, 10):\n    print(f'line {i}', flush=True)\n    time.sleep(0.3)"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    path = marker.with_name(f"progressive-{marker.name}.ipynb")
    path.write_text(nbformat.writes(nb))
    return path


def _requests(server: Server, route: str) -> int:
    """How many requests of ``route`` (a template) the server's access log holds."""
    return server.output.read_text(errors="replace").count(f"GET {route} 200")


def follow_in_order(cli: Cli, session: Session, server: Server, tmp: Path) -> str:
    """`logs --follow` shows each line once, in order, while the job runs, and exits 0 at its end; it
    reads the event stream (the access log counts one more stream, and no polled live view)."""
    streams = _requests(server, "/admin/notebooks/jobs/{job_id}/events")
    polls = _requests(server, "/admin/notebooks/jobs/{job_id}/live")
    marker = tmp / f"marker-{os.urandom(4).hex()}"
    submitted = cli("submit", str(progressive_notebook(marker)))
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    follow = cli.popen("logs", job_id, "--follow")
    assert follow.stdout is not None
    early = [follow.stdout.readline() for _ in range(5)]
    assert early == [f"line {i}\n" for i in range(5)]
    # The job is waiting for the marker: these lines were streamed while it runs, not read at its end.
    assert session.get(f"/admin/notebooks/jobs/{job_id}")["status"] == "EXECUTING"
    marker.touch()
    rest, err = follow.communicate(timeout=180)
    assert follow.returncode == 0, err
    assert rest == "".join(f"line {i}\n" for i in range(5, 10))
    assert "to stderr\n" in err
    assert f"COMPLETED: job {job_id}" in err
    assert _requests(server, "/admin/notebooks/jobs/{job_id}/events") > streams
    assert _requests(server, "/admin/notebooks/jobs/{job_id}/live") == polls
    return job_id


def submit_wait_with_parameter(cli: Cli) -> str:
    notebook = cli.notebook("parameters.ipynb")
    done = cli("submit", str(notebook), "-p", "name", "Ada", "-p", "count", "7", "--wait")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert job_id.startswith("j") and "\n" not in job_id
    assert f"COMPLETED: job {job_id}" in done.stderr
    out = cli("output", job_id, "-")
    assert out.returncode == 0, out.stderr
    assert "'Ada' 7" in out.stdout
    return job_id


# -- embedded mode -----------------------------------------------------------------------------------------


def test_login_stores_a_user_only_token_and_finds_the_context(server: Server, tmp_path: Path):
    cli = make_cli(tmp_path)
    origin = server.url.rsplit("/", 1)[0]  # https://127.0.0.1:PORT, without /arcgis
    login(cli, origin + "/", server.cert)
    assert stat.S_IMODE(cli.login_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.login_file.parent.stat().st_mode) == 0o700
    stored = json.loads(cli.login_file.read_text())
    assert stored["url"] == server.url
    assert stored["username"] == "alice"
    assert stored["ca_cert"] == str(server.cert.resolve())
    listed = cli("jobs", "--json")  # the remembered certificate is used
    assert listed.returncode == 0, listed.stderr
    out = cli("logout")
    assert out.returncode == 0 and "revoked the token" in out.stderr, out.stderr
    assert not cli.login_file.exists()
    # the token is dead on the server too, not only forgotten here
    with server.client() as http:
        refused = http.get(
            server.url + "/admin/notebooks/jobs", params={"f": "json", "token": stored["token"]}
        )
    assert refused.json()["code"] == 498
    after = cli("jobs")
    assert after.returncode == 2
    assert after.stderr == "not signed in: run 'nbjobs login URL' (or give --url and --token)\n"


def test_a_wrong_password_is_one_line(server: Server, tmp_path: Path):
    cli = make_cli(tmp_path)
    done = cli(
        "login", server.url, "-u", "alice", "--password-stdin", "--ca-cert", str(server.cert), input="nope\n"
    )
    assert done.returncode == 1
    assert done.stderr == "error 400: Unable to generate token. (Invalid username or password.)\n"
    assert not cli.login_file.exists()


def test_submit_wait_with_a_parameter(cli: Cli):
    submit_wait_with_parameter(cli)


def test_submit_twice_reuses_the_item(cli: Cli, alice: Session):
    notebook = cli.notebook("trivial.ipynb")
    first = cli("submit", str(notebook), "--wait")
    second = cli("submit", str(notebook), "--wait")
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    item_ids = [
        alice.get(f"/admin/notebooks/jobs/{r.stdout.strip()}")["inputs"]["itemId"] for r in (first, second)
    ]
    assert item_ids[0] == item_ids[1]
    assert f"(reused item {item_ids[0]})" in second.stderr
    items = alice.get("/sharing/rest/content/users/alice")["items"]
    keyword = [
        k for k in next(i for i in items if i["id"] == item_ids[0])["typeKeywords"] if k.startswith("nbjobs:")
    ]
    assert len(keyword) == 1 and len(keyword[0]) == len("nbjobs:sha256:") + 64
    assert [i["id"] for i in items if keyword[0] in i["typeKeywords"]] == [item_ids[0]]
    notebook.write_text(notebook.read_text().replace('"cells": [', '"cells": [ ', 1))  # other bytes
    third = cli("submit", str(notebook))
    assert third.returncode == 0, third.stderr
    assert "(uploaded item" in third.stderr


def test_runtime_and_timeout_reach_the_job(cli: Cli, alice: Session):
    runtime = alice.get("/admin/notebooks/runtimes")["runtimes"][0]
    notebook = cli.notebook("trivial.ipynb")
    done = cli("submit", str(notebook), "--runtime", runtime["name"].upper(), "--timeout", "5", "--wait")
    assert done.returncode == 0, done.stderr
    job = alice.get(f"/admin/notebooks/jobs/{done.stdout.strip()}")
    assert job["notebookRuntimeId"] == runtime["id"]
    assert job["inputs"]["executionTimeoutInMinutes"] == 5
    items_before = len(alice.get("/sharing/rest/content/users/alice")["items"])
    other = cli.cwd / "other.ipynb"
    other.write_text(notebook.read_text() + "\n")
    wrong = cli("submit", str(other), "--runtime", "No Such Runtime")
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("no runtime named 'No Such Runtime' on the server (runtimes: ")
    assert len(alice.get("/sharing/rest/content/users/alice")["items"]) == items_before  # nothing uploaded


def test_a_failing_notebook_exits_1(cli: Cli):
    done = cli("submit", str(cli.notebook("raises.ipynb")), "--wait")
    assert done.returncode == 1, done.stderr
    assert "FAILED [cell_error] (cell 1): ValueError: boom at cell 1" in done.stderr


def test_jobs_json_and_filters(cli: Cli):
    done = cli("submit", str(cli.notebook("raises.ipynb")), "--wait")
    failed_id = done.stdout.strip()
    listed = cli("jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)
    assert failed_id in [j["jobId"] for j in jobs]
    assert {j["username"] for j in jobs} == {"alice"}
    only_failed = json.loads(cli("jobs", "--json", "--status", "failed").stdout)
    assert only_failed and {j["status"] for j in only_failed} == {"FAILED"}
    assert json.loads(cli("jobs", "--json", "--num", "1").stdout)[0]["jobId"] == jobs[0]["jobId"]
    assert json.loads(cli("jobs", "--json", "--user", "bob").stdout) == []
    table = cli("jobs", "--num", "3")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["JOB", "STATUS", "USER"]
    assert failed_id in table.stdout


def test_cancel_a_long_job(cli: Cli, alice: Session):
    submitted = cli("submit", str(cli.notebook("sleeps.ipynb")))
    job_id = submitted.stdout.strip()
    logs = cli.popen("logs", job_id, "--follow")
    assert logs.stdout is not None
    assert logs.stdout.readline() == "sleeping\n"  # the job is in its sleeping cell
    done = cli("cancel", job_id)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"cancel requested: {job_id}\n"
    rest, err = logs.communicate(timeout=120)
    assert logs.returncode == 1, err
    assert "CANCELLED [cancelled]" in err
    assert alice.get(f"/admin/notebooks/jobs/{job_id}")["status"] == "CANCELLED"


def test_output_download(cli: Cli, tmp_path: Path):
    job_id = submit_wait_with_parameter(cli)
    target = tmp_path / "out.ipynb"
    done = cli("output", job_id, str(target))
    assert done.returncode == 0, done.stderr
    executed = nbformat.reads(target.read_text(), as_version=4)
    assert "'Ada' 7" in executed.cells[-1].outputs[0].text
    html = cli("output", job_id, "--html")
    assert html.returncode == 0, html.stderr
    page = (cli.cwd / f"{job_id}.html").read_text()
    assert "<html" in page.lower()
    assert "Ada" in page


def test_errors_of_the_server_are_one_line(cli: Cli, server: Server, tmp_path: Path):
    missing = "j" + "0" * 32
    for args in (("output", missing), ("cancel", missing), ("logs", missing, "--follow")):
        done = cli(*args)
        assert done.returncode == 1, done.stderr
        assert done.stderr == f"error 404: Job '{missing}' does not exist or is inaccessible.\n"
    bob = make_cli(tmp_path)
    login(bob, server.url, server.cert, "bob")
    mine = json.loads(cli("jobs", "--json", "--num", "1").stdout)[0]["jobId"]
    seen_by_bob = bob("output", mine)
    assert seen_by_bob.stderr == f"error 404: Job '{mine}' does not exist or is inaccessible.\n"
    expired = cli("jobs", "--token", "not-a-token")
    assert (expired.returncode, expired.stderr) == (1, "error 498: Invalid token.\n")


def test_url_and_token_from_the_environment(cli: Cli, server: Server, alice: Session, tmp_path: Path):
    fresh = make_cli(tmp_path)  # no stored login at all
    done = fresh(
        "jobs", "--json", "--ca-cert", str(server.cert), NBJOBS_URL=server.url, NBJOBS_TOKEN=alice.token
    )
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_down_is_one_line(cli: Cli, tmp_path: Path):
    url = f"https://127.0.0.1:{_closed_port()}/arcgis"
    notebook = cli.notebook("trivial.ipynb")
    for done in (
        cli("submit", str(notebook), "--url", url, "--token", "t"),
        make_cli(tmp_path)("login", url, "-u", "alice", "--password-stdin", input="x\n"),
    ):
        assert done.returncode == 2
        assert done.stderr == f"cannot reach {url}: connection refused\n"


def test_a_wrong_certificate_is_one_line(cli: Cli, server: Server, tmp_path: Path):
    fresh = make_cli(tmp_path)
    for extra in ((), ("--ca-cert", certifi.where())):  # the system's CAs; a bundle that is not the server's
        done = fresh(
            "login", server.url, "-u", "alice", "--password-stdin", *extra, input=USER_PASSWORD + "\n"
        )
        assert done.returncode == 2
        assert done.stderr.startswith(f"certificate verify failed for {server.url} (")
        assert done.stderr.endswith("; use --ca-cert or --insecure\n") and done.stderr.count("\n") == 1
    notebook = cli.notebook("trivial.ipynb")
    done = cli("submit", str(notebook), "--ca-cert", certifi.where())
    assert done.returncode == 2 and done.stderr.startswith("certificate verify failed for ")
    insecure = fresh(
        "login", server.url, "-u", "alice", "--password-stdin", "--insecure", input=USER_PASSWORD + "\n"
    )
    assert insecure.returncode == 0, insecure.stderr
    assert json.loads(fresh.login_file.read_text())["insecure"] is True
    assert fresh("jobs", "--json").returncode == 0


def test_logs_follow_shows_lines_in_order_each_once(cli: Cli, alice: Session, server: Server, tmp_path: Path):
    follow_in_order(cli, alice, server, tmp_path)


def test_logs_without_follow_prints_the_tail_so_far(cli: Cli, alice: Session, tmp_path: Path):
    marker = tmp_path / "marker"
    job_id = cli("submit", str(progressive_notebook(marker))).stdout.strip()

    def printed_all_five() -> str:
        done = cli("logs", job_id)
        assert done.returncode == 0, done.stderr
        return done.stdout if "line 4\n" in done.stdout else ""

    assert eventually(printed_all_five, what="five lines in the tail") == "".join(
        f"line {i}\n" for i in range(5)
    )
    marker.touch()
    alice.wait(job_id, set(ENDED))


# -- Celery mode: the job runs on an `nbjobs worker`, the stream still follows it -------------------------

CELERY_REDIS_URL = (
    os.environ.get("NBJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/13").rsplit("/", 1)[0] + "/11"
)


def _start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def _broker_mode(tmp: Path, database_url: str) -> Iterator[Server]:
    from tests.integration.cluster import TIMINGS

    env = {
        **os.environ,
        **TIMINGS,
        "NBJOBS_DATABASE_URL": database_url,
        "NBJOBS_BROKER_URL": CELERY_REDIS_URL,
        "NBJOBS_ADMIN_PASSWORD": "celery-admin-password",
    }
    port = _closed_port()
    data_dir = tmp / "api"
    server = Server(
        f"https://127.0.0.1:{port}/arcgis", data_dir, data_dir / "nbjobs-cert.pem", tmp / "serve.log"
    )
    argv = [NBJOBS, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    serve = _start(argv, server.output, env)
    worker_log = tmp / "worker.log"
    worker: subprocess.Popen[bytes] | None = None

    def answers() -> bool:
        assert serve.poll() is None, server.output.read_text()
        try:
            with server.client() as http:
                return http.get(server.url + "/sharing/rest", params={"f": "json"}).status_code == 200
        except Exception:
            return False

    def consuming() -> bool:
        assert worker is not None and worker.poll() is None, worker_log.read_text()
        return " ready." in worker_log.read_text(errors="replace")

    try:
        eventually(answers, what="nbjobs serve in broker mode to answer")
        add = [NBJOBS, "users", "add", "alice", "--password", USER_PASSWORD, "--data-dir", str(data_dir)]
        added = subprocess.run(add, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert added.returncode == 0, added.stderr
        worker = _start([NBJOBS, "worker", "--data-dir", str(tmp / "w1")], worker_log, env)
        eventually(consuming, what="the worker to consume")
        yield server
    finally:
        if worker is not None:
            _stop(worker)
        _stop(serve)


@pytest.fixture(scope="module")
def celery_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`nbjobs serve` in broker mode on PostgreSQL + Redis, and one `nbjobs worker`, both subprocesses."""
    import redis

    from tests.integration.cluster import fresh_database, unavailable

    client = redis.Redis.from_url(CELERY_REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        unavailable(f"Redis at {CELERY_REDIS_URL}", exc)
    client.flushdb()
    tmp = tmp_path_factory.mktemp("cli-celery")
    try:
        for database_url in fresh_database():
            with _broker_mode(tmp, database_url) as server:
                yield server
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="module")
def celery_cli(celery_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    made = make_cli(tmp_path_factory.mktemp("cli-celery-client"))
    login(made, celery_server.url, celery_server.cert)
    return made


@pytest.mark.postgres
@pytest.mark.redis
def test_celery_submit_wait_with_a_parameter(celery_cli: Cli, celery_server: Server):
    job_id = submit_wait_with_parameter(celery_cli)
    assert "jobs go to the broker" in celery_server.output.read_text()
    worker_log = celery_server.data_dir.parent / "worker.log"
    assert f"running job {job_id} (attempt 1)" in worker_log.read_text(errors="replace")


@pytest.mark.postgres
@pytest.mark.redis
def test_celery_logs_follow_shows_lines_in_order_each_once(
    celery_cli: Cli, celery_server: Server, tmp_path: Path
):
    alice = sign_in(celery_server, "alice", USER_PASSWORD)
    try:
        job_id = follow_in_order(celery_cli, alice, celery_server, tmp_path)
    finally:
        alice.http.close()
    assert f"running job {job_id} (attempt 1)" in (celery_server.data_dir.parent / "worker.log").read_text()


def test_submit_wait_draws_a_progress_bar_on_a_terminal(cli: Cli, server: Server):
    """stderr a terminal: rich's per-cell bar (percent and the server's "Executing cell …" message),
    fed by the job's event stream."""
    import pty

    streams = _requests(server, "/admin/notebooks/jobs/{job_id}/events")

    notebook = cli.notebook("parameters.ipynb")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [NBJOBS, "submit", str(notebook), "--wait"], stdout=subprocess.PIPE, stderr=terminal,
        env=cli.env(TERM="xterm"), cwd=cli.cwd,
    )  # fmt: skip
    os.close(terminal)
    drawn = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the process closed the terminal's last end
            break
        if not chunk:
            break
        drawn += chunk
    os.close(controller)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, drawn.decode(errors="replace")
    job_id = stdout.decode().strip()
    screen = drawn.decode(errors="replace")
    assert "Executed 3 of 3 cells" in screen and "100%" in screen
    assert "\x1b[" in screen  # drawn with terminal control sequences, not printed as lines
    assert f"COMPLETED: job {job_id}" in screen
    assert _requests(server, "/admin/notebooks/jobs/{job_id}/events") > streams
