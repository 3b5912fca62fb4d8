"""The real server: ``nbjobs serve`` in a subprocess over HTTPS on loopback, one worker, a temp data dir."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import notebook_bytes

ADMIN_PASSWORD = "e2e-admin-password"
USER_PASSWORD = "e2e-user-password"
NBJOBS = str(Path(sys.executable).parent / "nbjobs")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nbjobs(*args: str, data_dir: Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NBJOBS, *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, input=input, timeout=60, check=False,
    )  # fmt: skip


@dataclass
class Server:
    url: str  # https://127.0.0.1:PORT/arcgis
    data_dir: Path
    cert: Path
    output: Path

    def client(self) -> httpx.Client:
        return httpx.Client(verify=ssl.create_default_context(cafile=str(self.cert)), timeout=60)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("nbjobs-e2e")
    port = _free_port()
    env = {
        **os.environ,
        "NBJOBS_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "NBJOBS_MAX_UPLOAD_BYTES": str(20 * 1024 * 1024),
        "NBJOBS_STREAM_HEARTBEAT_SECONDS": "1",  # the stream tests see heartbeats without waiting 15 s
    }
    output = data_dir / "serve.log"
    with open(output, "wb") as log:
        proc = subprocess.Popen(
            [NBJOBS, "serve", "--host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(data_dir), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    server = Server(f"https://127.0.0.1:{port}/arcgis", data_dir, data_dir / "nbjobs-cert.pem", output)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"nbjobs serve exited:\n{output.read_text()}")
            try:
                with server.client() as c:
                    c.get(server.url + "/sharing/rest", params={"f": "json"}).raise_for_status()
                break
            except (httpx.HTTPError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"nbjobs serve did not answer:\n{output.read_text()}")
                time.sleep(0.3)
        for name in ("alice", "bob"):
            added = _nbjobs("users", "add", name, "--password", USER_PASSWORD, data_dir=data_dir)
            assert added.returncode == 0, added.stderr
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Session:
    """A signed-in user talking to the server: f=json and the token on every call."""

    http: httpx.Client
    base: str
    username: str
    token: str

    def get(self, path: str, **params: object) -> dict:
        answer = self.http.get(self.base + path, params={"f": "json", **params},
                               headers={"X-Esri-Authorization": f"Bearer {self.token}"})  # fmt: skip
        assert answer.status_code == 200
        return answer.json()

    def post(self, path: str, files: dict | None = None, **data: object) -> dict:
        body = {"f": "json", "token": self.token, **{k: str(v) for k, v in data.items()}}
        answer = self.http.post(self.base + path, data=body, files=files)
        assert answer.status_code == 200
        return answer.json()

    def add_notebook(self, name: str) -> str:
        files = {"file": (name, notebook_bytes(name), "application/x-ipynb+json")}
        answer = self.post(f"/sharing/rest/content/users/{self.username}/addItem", files=files,
                           type="Notebook", title=name)  # fmt: skip
        assert answer.get("success") is True, answer
        return answer["id"]

    def wait(self, job_id: str, statuses: set[str], timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/admin/notebooks/jobs/{job_id}")
            if job["status"] in statuses:
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.3)


def sign_in(server: Server, username: str, password: str) -> Session:
    http = server.client()
    answer = http.post(server.url + "/sharing/rest/generateToken",
                       data={"username": username, "password": password, "f": "json", "client": "referer",
                             "referer": "https://localhost"}).json()  # fmt: skip
    assert "token" in answer, answer
    return Session(http, server.url, username, answer["token"])


@pytest.fixture(scope="session")
def admin(server: Server) -> Iterator[Session]:
    session = sign_in(server, "admin", ADMIN_PASSWORD)
    yield session
    session.http.close()


@pytest.fixture(scope="session")
def alice(server: Server) -> Iterator[Session]:
    session = sign_in(server, "alice", USER_PASSWORD)
    yield session
    session.http.close()


@pytest.fixture(scope="session")
def bob(server: Server) -> Iterator[Session]:
    session = sign_in(server, "bob", USER_PASSWORD)
    yield session
    session.http.close()
