"""The web app in-process over a real SQLite store, with no workers: jobs stay SUBMITTED unless a test
moves them, so every API answer is deterministic."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from nbjobs.clock import ManualClock
from nbjobs.models.accounts import ORG_ADMIN, ORG_USER
from nbjobs.roots.server import Server
from nbjobs.settings import load_settings
from nbjobs.web.app import create_app
from tests.conftest import notebook_bytes

PASSWORD = "correct horse battery"
CTX = "/arcgis"


@pytest.fixture
def clock() -> ManualClock:
    import time

    return ManualClock(time.time_ns() // 1_000_000)


@pytest.fixture
def nb(tmp_path: Path, clock: ManualClock) -> Iterator[Server]:
    settings = load_settings({}, data_dir=tmp_path, workers=0, max_upload_bytes=64 * 1024)
    app = Server.from_settings(settings, clock=clock)
    app.prepare()
    app.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # fast, still argon2
    app.users.add("admin", PASSWORD, role=ORG_ADMIN)
    app.users.add("alice", PASSWORD, role=ORG_USER)
    app.users.add("bob", PASSWORD, role=ORG_USER)
    app.users.add("viewer", PASSWORD, role=ORG_USER, privileges=("portal:user:viewOrgItems",))
    yield app
    app.store.close()


@pytest.fixture
def client(nb: Server) -> Iterator[TestClient]:
    with TestClient(create_app(nb.web), base_url="https://testserver") as c:
        yield c


@dataclasses.dataclass
class Caller:
    """One signed-in user's view of the API: every call sends f=json and the user's token."""

    client: TestClient
    username: str
    token: str

    def get(self, path: str, **params: object):
        return self.client.get(CTX + path, params={"f": "json", "token": self.token, **params})

    def post(self, path: str, files: dict | None = None, **data: object):
        body = {"f": "json", "token": self.token, **{k: str(v) for k, v in data.items()}}
        return self.client.post(CTX + path, data=body, files=files)

    def add_notebook(self, name: str = "parameters.ipynb", **fields: object) -> str:
        files = {"file": (name, notebook_bytes(name), "application/x-ipynb+json")}
        answer = self.post(
            f"/sharing/rest/content/users/{self.username}/addItem",
            files=files,
            type="Notebook",
            title=name,
            **fields,
        ).json()
        assert answer["success"] is True, answer
        return answer["id"]

    def execute(self, item_id: str, **data: object) -> dict:
        return self.post("/admin/notebooks/executeNotebook", itemId=item_id, **data).json()


def _caller(client: TestClient, nb: Server, name: str) -> Caller:
    return Caller(client, name, nb.tokens.issue(nb.users.get(name)).token)


@pytest.fixture
def admin(client: TestClient, nb: Server) -> Caller:
    return _caller(client, nb, "admin")


@pytest.fixture
def alice(client: TestClient, nb: Server) -> Caller:
    return _caller(client, nb, "alice")


@pytest.fixture
def bob(client: TestClient, nb: Server) -> Caller:
    return _caller(client, nb, "bob")


@pytest.fixture
def viewer(client: TestClient, nb: Server) -> Caller:
    return _caller(client, nb, "viewer")
