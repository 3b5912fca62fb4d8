"""The authorization matrix: every route of the live app × seven callers, from ``authz_matrix.toml``.

The callers are anonymous, an expired token, a forged token (a tampered copy of B's, and a random one),
plain user A (alice), plain user B (bob, who owns every resource the path points at), a user without
notebook privileges (viewer) and an administrator. Requests go over the in-process TestClient to a real
SQLite store with real tokens. Outcomes:

* ``ok``      a success answer;
* ``login``   499 Token Required (anonymous) or 498 (expired, forged);
* ``denied``  403 in the route's envelope;
* ``hidden``  exactly what the same request answers for random nonexistent ids (same code, message and
  details once the ids are masked), so the answer says nothing about whether B's resource exists.

For A, the viewer and the token-less callers every non-ok answer (denied included) must also be the
nonexistent-id answer, no ok answer may carry any of B's ids, and no call may change B's resources.
Owners and admins run mutating routes on fresh resources of B, so each test stands alone.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import socket
import string
import sys
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import text
from starlette.routing import BaseRoute
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from nbjobs.clock import ManualClock
from nbjobs.models.accounts import ORG_ADMIN, ORG_USER, Principal
from nbjobs.models.interactive import ContainerStatus, new_container_id, new_notebook_id
from nbjobs.models.jobs import OUTPUT, JobStatus, JobUpdate, new_job_id
from nbjobs.models.runtimes import DEFAULT_RUNTIME
from nbjobs.roots.server import Server
from nbjobs.service.authz import OPERATOR
from nbjobs.service.automation.tasks import TaskSpec
from nbjobs.service.automation.webhooks import ReceiverSpec
from nbjobs.service.content.items import ItemFields
from nbjobs.service.runtimes.fields import RuntimeFields
from nbjobs.settings import load_settings
from nbjobs.web.app import create_app
from tests.conftest import notebook_bytes
from tests.security.fuzz_support import JsonUpstream, add_lab

MATRIX_FILE = Path(__file__).with_name("authz_matrix.toml")
CTX = "/arcgis"
PASSWORD = "correct horse battery"
SECRET = "0123456789abcdef0123456789abcdef"
SIGNATURE_HEADER = "x-hub-signature-256"
ROLES = ("anonymous", "expired", "forged", "user_a", "user_b", "viewer", "admin")
OUTCOMES = ("ok", "login", "denied", "hidden")
OUTSIDERS = ("anonymous", "expired", "forged", "user_a", "viewer")  # must learn nothing of B's things
OWNERS = ("user_b", "admin")  # run mutating routes on fresh resources of B
MINUTE = 60_000
LOGIN_ANSWER = {
    "anonymous": (499, "Token Required."),
    "expired": (498, "Token Expired."),
    "forged": (498, "Invalid token."),
}
# Path parameters and the resource each names by default (an entry's ``params`` overrides).
PARAM_KINDS = {
    "username": "owner",
    "item_id": "item",
    "job_id": "job",
    "task_id": "task",
    "run_id": "run",
    "receiver_id": "receiver",
    "service_name": "service",
    "task_name": "tooltask",
    "runtime_id": "runtime",
    "portal_id": "portal",
    "folder": "folder",
    "param_name": "outparam",
    "resource_key": "snapshot",
    "container_id": "container",
    "notebook_id": "notebook",
}
# Kinds that name one of B's own resources: replaced by random ids for the nonexistent-id answer.
RANDOM: dict[str, Callable[[], str]] = {
    "owner": lambda: "nosuchuser" + secrets.token_hex(4),
    "item": lambda: uuid.uuid4().hex,
    "toolitem": lambda: uuid.uuid4().hex,
    "upload": lambda: uuid.uuid4().hex,
    "job": new_job_id,
    "donejob": new_job_id,
    "gpjob": new_job_id,
    "task": lambda: uuid.uuid4().hex,
    "run": lambda: uuid.uuid4().hex,
    "receiver": lambda: str(uuid.uuid4()),
    "service": lambda: uuid.uuid4().hex,
    "snapshot": lambda: f"snapshot-{uuid.uuid4().hex}.json",
    "container": new_container_id,
    "notebook": new_notebook_id,
}
CONSTANTS = {
    "tooltask": "Trivial",
    "portal": "self",
    "folder": "folder1",
    "inparam": "x",
    "outparam": "y",
    "runtime": DEFAULT_RUNTIME.runtime_id,
    "password": PASSWORD,
    "python": sys.executable,
}
FINGERPRINT = {
    "jobs": "SELECT * FROM jobs WHERE username = :b ORDER BY job_id",
    "job_blobs": "SELECT job_id, kind, length(data), updated FROM job_blobs WHERE job_id IN "
    "(SELECT job_id FROM jobs WHERE username = :b) ORDER BY job_id, kind",
    "items": "SELECT item_id, owner, title, type, description, snippet, tags, filename, size, modified, "
    "length(data) FROM items WHERE owner = :b ORDER BY item_id",
    "uploads": "SELECT * FROM item_uploads WHERE owner = :b ORDER BY item_id",
    "parts": "SELECT item_id, part_num, size FROM item_upload_parts WHERE item_id IN "
    "(SELECT item_id FROM item_uploads WHERE owner = :b) ORDER BY item_id, part_num",
    "tasks": "SELECT * FROM tasks WHERE owner = :b ORDER BY task_id",
    "runs": "SELECT * FROM task_runs WHERE task_id IN (SELECT task_id FROM tasks WHERE owner = :b) "
    "ORDER BY run_id",
    "receivers": "SELECT * FROM webhook_receivers ORDER BY receiver_id",
    "webtools": "SELECT * FROM webtools ORDER BY service_name",
    "users": "SELECT * FROM users ORDER BY username",
    "runtimes": "SELECT * FROM runtimes ORDER BY runtime_id",
    "config": "SELECT * FROM server_config ORDER BY name",
    "snapshots": "SELECT resource_key, item_id, name, created, size, automatic FROM item_snapshots "
    "WHERE item_id IN (SELECT item_id FROM items WHERE owner = :b) ORDER BY resource_key",
    "lab_containers": "SELECT * FROM lab_containers WHERE username = :b ORDER BY container_id",
    "lab_notebooks": "SELECT * FROM lab_notebooks WHERE username = :b ORDER BY notebook_id",
}
# The proxy's ``{path:path}``: what the request asks B's Jupyter server for.
UPSTREAM_PATH = "api/status"
_PLACEHOLDER = re.compile(r"\$(\w+)")


# -- the matrix file --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    method: str
    path: str
    expect: dict[str, str]
    owner: str = "B"  # whose resources the path params point at ("B"), or "none"
    public: bool = False
    mutates: bool = False
    sink: bool = False
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    data: dict[str, str] = dataclasses.field(default_factory=dict)
    file: str = ""  # attach this golden notebook as the multipart ``file`` part
    auth: str = "field"  # how the token travels: a ``token`` field, or "header" (Authorization: Bearer)

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    def kinds(self) -> dict[str, str]:
        """Path parameter -> the kind of value it takes."""
        names = re.findall(r"{(\w+)}", self.path)
        return {n: self.params.get(n, PARAM_KINDS.get(n, "")) for n in names}

    def referenced(self) -> set[str]:
        """Every kind the request uses, in its path or its fields."""
        used = set(self.kinds().values())
        for value in self.data.values():
            used |= set(_PLACEHOLDER.findall(value))
        return used


def load_matrix() -> list[Entry]:
    """The main file, then each ``authz_matrix_*.toml`` beside it (one per group of app pages)."""
    files = [MATRIX_FILE, *sorted(MATRIX_FILE.parent.glob("authz_matrix_*.toml"))]
    return [Entry(**route) for file in files for route in tomllib.loads(file.read_text("utf-8"))["route"]]


ENTRIES = load_matrix()


# -- the live routes --------------------------------------------------------------------------------


def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, full path) of every route, descending into included routers."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _walk(included.routes, prefix + getattr(context, "prefix", ""))
            continue
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                yield method, prefix + route.path  # type: ignore[attr-defined]


def live_operations(app: Any) -> set[tuple[str, str]]:
    """Every (method, path below /arcgis) the app answers: its OpenAPI document plus a walk of its
    routes (which also finds routes left out of the schema); the docs pages themselves excluded."""
    found = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    found |= set(_walk(app.routes))
    docs = {f"{CTX}/docs", f"{CTX}/openapi.json", f"{CTX}/docs/oauth2-redirect"}
    return {(m, p.removeprefix(CTX)) for m, p in found if p.startswith(CTX + "/") and p not in docs}


# -- the world: users, tokens and B's resources -------------------------------------------------------


@dataclasses.dataclass
class World:
    nb: Server
    client: TestClient
    clock: ManualClock
    tokens: dict[str, list[str]]  # role -> the token(s) it sends ([] for anonymous)
    refs: dict[str, str]  # kind -> B's resource of that kind
    a_refs: dict[str, str]  # A's own resources, for the lists
    upstream: JsonUpstream  # what B's Jupyter server answers with, behind the proxy
    baseline: dict[str, Any] = dataclasses.field(default_factory=dict)
    dirty: bool = False  # an earlier test may have changed B's resources: check them before the next

    def user(self, name: str):
        return self.nb.users.get(name)

    # -- building B's resources (through the services, on the real store) -----------------------------
    def add_item(self, owner: str, golden: str = "parameters.ipynb", title: str = "") -> str:
        data = notebook_bytes(golden)
        fields = ItemFields(title=title or golden.removesuffix(".ipynb"), filename=golden)
        return self.nb.items.add(Principal(owner), owner, data, type="Notebook", fields=fields).item_id

    def add_snapshot(self, owner: str, item_id: str) -> str:
        return self.nb.web.snapshots.create(Principal(owner), item_id, name="kept").resource_key

    def add_job(self, owner: str, item_id: str) -> str:
        return self.nb.notebooks.execute(self.user(owner), item_id, update_portal_item=False).job_id

    def finish(self, job_id: str, results: dict | None = None) -> None:
        now = self.clock()
        store = self.nb.store
        store.transition(job_id, JobStatus.EXECUTING, now, update=JobUpdate(start_time=now))
        store.put_blob(job_id, OUTPUT, notebook_bytes("trivial.ipynb"), now)
        store.transition(job_id, JobStatus.COMPLETED, now, update=JobUpdate(results=results or {}))

    def add_upload(self, owner: str) -> str:
        who = Principal(owner)
        upload = self.nb.items.begin_upload(who, owner, type="Notebook", fields=ItemFields(title="parts"))
        self.nb.items.add_part(who, upload, 1, notebook_bytes("parameters.ipynb"))
        return upload

    def add_task(self, owner: str, item_id: str, *, active: bool) -> str:
        spec = TaskSpec(
            title="every minute", type="ExecuteNotebook", item_id=item_id, minute="*/1", hour="*",
            day_of_month="*", month="*", day_of_week="?", max_occurrences=1, is_active=active,
        )  # fmt: skip
        return self.nb.tasks.create(self.user(owner), owner, spec).task_id

    def add_run(self, owner: str, task_id: str) -> str:
        task = self.nb.tasks.get(self.user(owner), owner, task_id)
        self.nb.scheduler.tick(now=task.next_fire)
        [run] = self.nb.tasks.runs(self.user(owner), owner, task_id)
        return run.run_id

    def add_receiver(self, owner: str, item_id: str) -> str:
        spec = ReceiverSpec(
            name=f"hook {secrets.token_hex(3)}", item_id=item_id, secret=SECRET,
            signature_headers=(SIGNATURE_HEADER,), username=owner,
        )  # fmt: skip
        return self.nb.webhooks.create(self.user("admin"), spec).receiver_id

    def add_service(self, owner: str, tool_item: str) -> str:
        props = {"jsonProperties": {"title": "Trivial", "notebookId": tool_item,
                                    "tasks": [{"type": "notebook", "name": "Trivial"}]}}  # fmt: skip
        return self.nb.webtools.publish(self.user(owner), props).service_name

    def add_gpjob(self, owner: str, service: str) -> str:
        return self.nb.webtools.submit(self.user(owner), service, "Trivial", {"x": "1"}).job_id

    def add_lab(self, owner: str, item_id: str, *, fresh: bool = False) -> tuple[str, str]:
        """A RUNNING container of ``owner`` (for the default runtime, or for a runtime of its own when
        ``fresh``, beside the first) and ``item_id`` open in it; the container answers at the World's
        upstream."""
        runtime = f"matrix-{secrets.token_hex(4)}" if fresh else ""
        return add_lab(self.nb, owner, item_id, self.upstream, runtime_id=runtime)

    def add_runtime(self) -> str:
        fields = RuntimeFields(name=f"spare {secrets.token_hex(4)}", python=sys.executable)
        return self.nb.runtimes.register(OPERATOR, fields).runtime_id

    def build_b(self) -> None:
        """B's resources, one of each kind, in the states the read routes need."""
        r: dict[str, str] = {"owner": "bob"}
        r["item"] = self.add_item("bob")
        r["snapshot"] = self.add_snapshot("bob", r["item"])
        r["job"] = self.add_job("bob", r["item"])
        r["donejob"] = self.add_job("bob", r["item"])
        self.finish(r["donejob"])
        r["upload"] = self.add_upload("bob")
        r["task"] = self.add_task("bob", r["item"], active=True)
        r["run"] = self.add_run("bob", r["task"])
        r["receiver"] = self.add_receiver("bob", r["item"])
        r["toolitem"] = self.add_item("bob", "webtool_trivial.ipynb", "Trivial")
        r["service"] = self.add_service("bob", r["toolitem"])
        r["gpjob"] = self.add_gpjob("bob", r["service"])
        self.finish(r["gpjob"], {"outputValues": {"y": {"value": 2}}})
        r["container"], r["notebook"] = self.add_lab("bob", r["item"])
        self.refs = r
        self.baseline = self.core()

    def fresh(self, kinds: set[str]) -> dict[str, str]:
        """New resources of B for a mutating call by an owner or admin; others as in ``refs``."""
        r = dict(self.refs)
        if kinds & {"item", "job", "task", "run", "snapshot"}:
            r["item"] = self.add_item("bob")
        if "snapshot" in kinds:
            r["snapshot"] = self.add_snapshot("bob", r["item"])
        if "job" in kinds:
            r["job"] = self.add_job("bob", r["item"])
        if "upload" in kinds:
            r["upload"] = self.add_upload("bob")
        if kinds & {"task", "run"}:
            r["task"] = self.add_task("bob", r["item"], active="run" in kinds)
        if "run" in kinds:
            r["run"] = self.add_run("bob", r["task"])
        if "receiver" in kinds:
            r["receiver"] = self.add_receiver("bob", r["item"])
        if kinds & {"toolitem", "service", "gpjob"}:
            r["toolitem"] = self.add_item("bob", "webtool_trivial.ipynb", "Trivial")
        if kinds & {"service", "gpjob"}:
            r["service"] = self.add_service("bob", r["toolitem"])
        if "gpjob" in kinds:
            r["gpjob"] = self.add_gpjob("bob", r["service"])
        if "runtime" in kinds:
            r["runtime"] = self.add_runtime()
        if kinds & {"container", "notebook"}:
            r["container"], r["notebook"] = self.add_lab("bob", r["item"], fresh=True)
        return r

    # -- what must not change ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, list[tuple]]:
        """Every stored row of B's (jobs, blobs, items, uploads, tasks, runs), every receiver, web tool,
        user, runtime and configuration value: what no outsider's or refused call may change."""
        with self.nb.store.engine.connect() as conn:
            return {name: [tuple(row) for row in conn.execute(text(sql), {"b": "bob"})]
                    for name, sql in FINGERPRINT.items()}  # fmt: skip

    def core(self) -> dict[str, Any]:
        """The resources in ``refs`` as stored."""
        nb, r = self.nb, self.refs
        job = nb.store.get(r["job"])
        done = nb.store.get(r["donejob"])
        gp = nb.store.get(r["gpjob"])
        item = nb.items.store.get(r["item"])
        upload = nb.items.store.get_upload(r["upload"])
        task = nb.tasks.store.get(r["task"])
        run = nb.tasks.store.get_run(r["run"])
        receiver = nb.webhooks.store.get(r["receiver"])
        tool = nb.webtools.store.get(r["service"])
        container = nb.interactive.containers.get(r["container"])
        notebook = nb.interactive.containers.get_notebook(r["notebook"])
        return {
            "job": job and (job.status, job.cancel_requested),
            "donejob": done and done.status,
            "gpjob": gp and (gp.status, gp.cancel_requested),
            "item": item and (item.title, item.modified, item.size, nb.items.store.get_data(item.item_id)),
            "upload": upload and (upload.owner, nb.items.store.part_sizes(r["upload"])),
            "task": task and (task.title, task.state, task.item_id, task.updated, task.parameters),
            "run": run and (run.status, run.result, run.updated),
            "receiver": receiver and dataclasses.astuple(receiver),
            "tool": tool and (tool.title, tool.modified, tool.snapshot_id, tool.access, tool.owner),
            "container": container and container.status,
            "notebook": notebook and notebook.closed,
        }

    def heal(self) -> None:
        """Rebuild B's resources when an earlier test changed them on purpose (an admin's deleteAll) or
        by a failure."""
        if self.dirty and self.core() != self.baseline:
            self.build_b()
        self.dirty = False

    def b_ids(self) -> set[str]:
        """Every id of B's things now in the store."""
        nb = self.nb
        ids = {j.job_id for j in nb.store.list(username="bob", limit=100_000)}
        ids |= {i.item_id for i in nb.items.store.list("bob")}
        ids |= {
            s.resource_key for i in nb.items.store.list("bob") for s in nb.web.snapshots.store.list(i.item_id)
        }
        for task in nb.tasks.store.list("bob"):
            ids.add(task.task_id)
            ids |= {run.run_id for run in nb.tasks.store.runs(task.task_id, 1000)}
        ids |= {x.receiver_id for x in nb.webhooks.store.list() if x.username == "bob"}
        ids |= {t.service_name for t in nb.webtools.store.list("bob", limit=1000)}
        ids |= {c.container_id for c in nb.interactive.containers.list(username="bob")}
        ids |= {n.notebook_id for n in nb.interactive.containers.notebooks(username="bob", open_only=False)}
        ids.add(self.refs["upload"])
        return ids


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    import time

    clock = ManualClock(time.time_ns() // 1_000_000)
    settings = load_settings(
        {},
        data_dir=tmp_path_factory.mktemp("authz"),
        workers=0,
        max_upload_bytes=64 * 1024,
        webhook_rate_per_minute=0,
        webtool_execute_wait_seconds=0.05,
        stream_max_seconds=0.3,  # the job-list stream ends by itself, so that a call returns
        stream_heartbeat_seconds=0.1,
    )
    nb = Server.from_settings(settings, clock=clock)
    nb.prepare()
    nb.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # fast, still argon2
    nb.users.add("admin", PASSWORD, role=ORG_ADMIN)
    nb.users.add("alice", PASSWORD, role=ORG_USER)
    nb.users.add("bob", PASSWORD, role=ORG_USER)
    nb.users.add("viewer", PASSWORD, role=ORG_USER, privileges=("portal:user:viewOrgItems",))
    days = nb.tokens.max_minutes

    def token(name: str, minutes: int = days) -> str:
        return nb.tokens.issue(nb.users.get(name), minutes).token

    expired = token("bob", 1)
    clock.advance(2 * MINUTE)  # B's one-minute token is now past its expiry
    bob = token("bob")
    tampered = bob[:-1] + ("A" if bob[-1] != "A" else "B")
    tokens = {
        "anonymous": [],
        "expired": [expired],
        "forged": [tampered, secrets.token_urlsafe(32)],
        "user_a": [token("alice")],
        "user_b": [bob],
        "viewer": [token("viewer")],
        "admin": [token("admin")],
    }
    with JsonUpstream() as upstream, TestClient(create_app(nb.web), base_url="https://testserver") as client:
        w = World(nb, client, clock, tokens, {}, {}, upstream)
        w.build_b()
        a_item = w.add_item("alice")
        a_tool_item = w.add_item("alice", "webtool_trivial.ipynb", "Trivial")
        a_container, a_notebook = w.add_lab("alice", a_item)
        w.a_refs = {
            "item": a_item,
            "job": w.add_job("alice", a_item),
            "task": w.add_task("alice", a_item, active=False),
            "service": w.add_service("alice", a_tool_item),
            "container": a_container,
            "notebook": a_notebook,
        }
        yield w
    nb.store.close()


# -- requests and answers -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    ok: bool
    status: int
    code: int | None = None
    message: str = ""
    details: tuple[str, ...] = ()
    text: str = ""

    def masked(self, values: dict[str, str]) -> tuple[int | None, str, tuple[str, ...]]:
        """(code, message, details) with the request's ids replaced by their kinds."""

        def mask(text: str) -> str:
            for kind, value in sorted(values.items(), key=lambda kv: -len(kv[1])):
                text = text.replace(value, f"<{kind}>")
            return text

        return self.code, mask(self.message), tuple(mask(d) for d in self.details)


def answer_of(response: Response) -> Answer:
    text = response.text
    if response.status_code in (301, 302, 303, 307, 308):
        return Answer(True, response.status_code, text=response.headers.get("location", ""))
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return Answer(False, response.status_code, error.get("code"), error.get("message", ""),
                      tuple(error.get("details") or ()), text)  # fmt: skip
    if isinstance(body, dict) and body.get("status") == "error":
        messages = body.get("messages") or [""]
        return Answer(False, response.status_code, body.get("code"), messages[0], tuple(messages[1:]), text)
    if response.status_code >= 400:
        return Answer(False, response.status_code, response.status_code, text[:200], (), text)
    return Answer(True, response.status_code, text=text)


def _fill(template: str, refs: dict[str, str], unique: str) -> str:
    return string.Template(template).substitute({**CONSTANTS, **refs, "unique": unique})


def request(world: World, entry: Entry, token: str | None, refs: dict[str, str]) -> Answer:
    unique = secrets.token_hex(4)
    path = entry.path
    for name, kind in entry.kinds().items():
        path = path.replace("{" + name + "}", _fill("$" + kind, refs, unique))
    path = path.replace("{path:path}", UPSTREAM_PATH)
    data = {k: _fill(v, refs, unique) for k, v in entry.data.items()}
    url = CTX + path
    client = world.client
    client.cookies.clear()  # each call is its caller's alone (a ?token= to the proxy sets the lab cookie)
    if entry.auth == "header":  # the lab proxy: the body is Jupyter's, a ?token= would be made a cookie
        headers = {"authorization": f"Bearer {token}"} if token else {}
        body = json.dumps(data).encode() if entry.method in ("POST", "PUT", "PATCH") else None
        return answer_of(
            client.request(entry.method, url, content=body, headers=headers, follow_redirects=False)
        )
    if entry.sink:
        body = json.dumps({"event": "ping", **data}).encode()
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
        headers = {SIGNATURE_HEADER: base64.b64encode(digest).decode(), "content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        return answer_of(client.post(url, content=body, headers=headers))
    fields = {"f": "json", **({"token": token} if token else {}), **data}
    if entry.method == "GET":
        return answer_of(client.get(url, params=fields, follow_redirects=False))
    files = None
    if entry.file:
        files = {"file": (entry.file, notebook_bytes(entry.file), "application/x-ipynb+json")}
    return answer_of(client.post(url, data=fields, files=files, follow_redirects=False))


def outcome(answer: Answer) -> str:
    if answer.ok:
        return "ok"
    if answer.code in (498, 499):
        return "login"
    if answer.code == 403:
        return "denied"
    return "hidden"  # confirmed (or refuted) against the nonexistent-id answer by the caller


# -- (1) the matrix covers the live app, exactly -------------------------------------------------------


def test_every_live_route_is_in_the_matrix_and_every_entry_is_live(world: World) -> None:
    live = live_operations(world.client.app)
    listed = [e.key for e in ENTRIES]
    duplicated = sorted({k for k in listed if listed.count(k) > 1})
    missing = sorted(live - set(listed))
    stale = sorted(set(listed) - live)
    assert not duplicated, f"listed twice in {MATRIX_FILE.name}: {duplicated}"
    assert not missing, f"routes missing from {MATRIX_FILE.name}: {missing}"
    assert not stale, f"entries of {MATRIX_FILE.name} that are no live route: {stale}"
    assert len(live) >= 136


def test_matrix_entries_are_well_formed() -> None:
    for e in ENTRIES:
        where = f"{e.method} {e.path}"
        assert set(e.expect) == set(ROLES), f"{where}: expect must name exactly {ROLES}"
        assert set(e.expect.values()) <= set(OUTCOMES), f"{where}: outcomes are {OUTCOMES}"
        assert e.auth in ("field", "header"), f"{where}: auth is 'field' or 'header'"
        kinds = e.referenced()
        unknown = kinds - set(RANDOM) - set(CONSTANTS) - {"unique", "oauth_state"}
        assert not unknown, f"{where}: unknown resource kinds {unknown}"
        if "hidden" in e.expect.values():
            assert kinds & set(RANDOM), f"{where}: 'hidden' needs a path or field naming B's resource"
        if not e.public:
            assert e.expect["anonymous"] == e.expect["expired"] == e.expect["forged"] == "login", where


# -- (2) each route × each caller ----------------------------------------------------------------------


def _cases() -> list[Any]:
    return [pytest.param(e, role, id=f"{e.method} {e.path} [{role}]") for e in ENTRIES for role in ROLES]


@pytest.mark.parametrize(("entry", "role"), _cases())
def test_route_as_role(world: World, entry: Entry, role: str) -> None:
    world.heal()
    world.dirty = True  # cleared only when the test passes without changing B's resources
    expected = entry.expect[role]
    refs = dict(world.refs)
    if entry.mutates and role in OWNERS and expected == "ok":
        refs = world.fresh(entry.referenced())
    if "oauth_state" in entry.referenced():
        refs["oauth_state"] = _oauth_state(world)
    changes = entry.mutates or entry.method == "POST"
    guarded = changes and not entry.sink and (role in OUTSIDERS or expected != "ok")
    for token in world.tokens[role] or [None]:  # forged: a tampered copy of B's token, then a random one
        before = world.snapshot() if guarded else None
        answer = request(world, entry, token, refs)
        got = outcome(answer)
        assert got == expected, f"{role} expected {expected}, got {got}: {answer.status} {answer.text[:400]}"
        if got == "login":
            # a constant answer, decided before any id is looked at
            assert (answer.code, answer.message) == LOGIN_ANSWER[role], answer
        if before is not None:
            assert world.snapshot() == before, f"{role}'s call changed B's resources or admin settings"
        if role in ("user_a", "viewer") and not entry.public:
            if got == "ok":
                leaked = sorted(i for i in world.b_ids() if i in answer.text)
                assert not leaked, f"{role}'s answer carries B's ids {leaked}"
            else:
                _assert_same_as_nonexistent(world, entry, token, refs, answer)
        elif got == "hidden":
            _assert_same_as_nonexistent(world, entry, token, refs, answer)
    world.dirty = (changes or entry.sink) and not guarded


def _assert_same_as_nonexistent(
    world: World, entry: Entry, token: str | None, refs: dict[str, str], answer: Answer
) -> None:
    kinds = entry.referenced() & set(RANDOM)
    if not kinds:
        return
    random_refs = {**refs, **{k: RANDOM[k]() for k in kinds}}
    other = request(world, entry, token, random_refs)
    real = answer.masked({k: refs[k] for k in kinds})
    nonexistent = other.masked({k: random_refs[k] for k in kinds})
    assert not other.ok and real == nonexistent, (
        f"existence leaks: B's resource answers {real}, a nonexistent one {nonexistent}"
    )


def _oauth_state(world: World) -> str:
    page = world.client.get(
        CTX + "/sharing/rest/oauth2/authorize",
        params={
            "client_id": "arcgisnotebooks",
            "response_type": "token",
            "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
        },
    ).text
    return json.loads(re.search(r"var oAuthInfo = (\{.*?\});", page).group(1))["oauth_state"]


# -- lists as A: her own things, none of B's ----------------------------------------------------------


A_LISTS = [
    "/admin/notebooks/jobs",
    "/admin/notebooks/jobs?detail=true",
    "/admin/system/jobs",
    "/admin/system/jobs?detail=true",
    "/sharing/rest/content/users/alice",
    "/sharing/rest/community/users/alice/tasks",
    "/admin/services",
    "/rest/services",
    "/admin/notebooks",
    "/admin/system/containers",
    "/admin/notebooks/deployments",
]


@pytest.mark.parametrize("path", A_LISTS)
def test_lists_as_a_show_her_own_and_none_of_bs(world: World, path: str) -> None:
    world.heal()
    url, _, query = path.partition("?")
    params = dict(p.split("=") for p in query.split("&") if p)
    token = world.tokens["user_a"][0]
    text = world.client.get(CTX + url, params={"f": "json", "token": token, **params}).text
    own = {v for v in world.a_refs.values() if v in text}
    assert own, f"A's own resources are missing from {path}: {text[:300]}"
    leaked = sorted(i for i in world.b_ids() if i in text)
    assert not leaked, f"{path} shows A some of B's ids: {leaked}"
    admin = world.client.get(
        CTX + url, params={"f": "json", "token": world.tokens["admin"][0], **params}
    ).text
    if "/users/alice" not in url:  # an admin's lists are everyone's (ArcGIS: "admin sees all jobs")
        assert any(i in admin for i in world.b_ids()), f"an admin's {path} should list B's things too"


# -- A's own paths naming B's things ------------------------------------------------------------------

_TASKS = "/sharing/rest/community/users/{username}/tasks"
_ITEMS = "/sharing/rest/content/users/{username}/items/{item_id}"
_GP_JOB = "/rest/services/{service_name}/GPServer/{task_name}/jobs/{job_id}"
_CONTAINERS = "/admin/system/containers/{container_id}/notebooks"
_DEPLOYMENTS = "/admin/notebooks/deployments/{container_id}/notebooks"
_YEARLY = {"title": "yearly", "type": "ExecuteNotebook", "itemId": "$item", "minute": "0", "hour": "0",
           "dayOfMonth": "1", "month": "1", "dayOfWeek": "?", "isActive": "false"}  # fmt: skip


def _cross(method: str, path: str, data: dict[str, str] | None = None, **params: str) -> Entry:
    """A's request on her own path (username, task or web tool) naming one of B's things."""
    params = {"username": "a_owner", **params}
    return Entry(method, path, {}, params=params, data=data or {})


CROSS = [
    _cross("GET", _TASKS + "/{task_id}"),
    _cross("GET", _TASKS + "/{task_id}/runs"),
    _cross("GET", _TASKS + "/{task_id}/runs/{run_id}", task_id="a_task"),
    _cross("POST", _TASKS + "/createTask", _YEARLY),
    _cross("POST", _TASKS + "/{task_id}/update", {"itemId": "$item"}, task_id="a_task"),
    _cross("GET", _ITEMS + "/status"),
    _cross("POST", _ITEMS + "/update", {"title": "mine now"}),
    _cross("POST", _ITEMS + "/delete"),
    _cross("POST", _ITEMS + "/commit", item_id="upload"),
    _cross("GET", _GP_JOB, service_name="a_service", job_id="gpjob"),
    _cross("GET", _GP_JOB + "/cancel", service_name="a_service"),
    _cross("POST", "/admin/notebooks/executeNotebook", {"itemId": "$item"}),
    _cross("POST", "/admin/services/analyzeNotebook", {"itemId": "$item"}),
    # B's container with her own notebook in the path, and her own container with B's notebook
    _cross("GET", _CONTAINERS + "/{notebook_id}", notebook_id="a_notebook"),
    _cross("GET", _CONTAINERS + "/{notebook_id}", container_id="a_container"),
    _cross("POST", _CONTAINERS + "/{notebook_id}/closeNotebook", notebook_id="a_notebook"),
    _cross("POST", _CONTAINERS + "/{notebook_id}/closeNotebook", container_id="a_container"),
    _cross("POST", _DEPLOYMENTS + "/{notebook_id}/closeNotebook", notebook_id="a_notebook"),
]


@pytest.mark.parametrize("entry", CROSS, ids=[f"{e.method} {e.path} {e.data or ''}" for e in CROSS])
def test_a_naming_bs_things_on_her_own_paths_gets_the_unknown_answer(world: World, entry: Entry) -> None:
    world.heal()
    refs = {**world.refs, "a_owner": "alice", **{f"a_{k}": v for k, v in world.a_refs.items()}}
    token = world.tokens["user_a"][0]
    before = world.snapshot()
    answer = request(world, entry, token, refs)
    assert outcome(answer) == "hidden", answer
    _assert_same_as_nonexistent(world, entry, token, refs, answer)
    assert world.snapshot() == before


# -- the lab proxy: B alone reaches B's Jupyter server ------------------------------------------------

PROXY_METHODS = ("GET", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")


def _lab(world: World, container_id: str = "", path: str = UPSTREAM_PATH) -> str:
    return f"{CTX}/notebooks/{container_id or world.refs['container']}/{path}"


def _bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def test_the_proxy_takes_b_to_his_server_with_its_own_token_and_nobody_else_anywhere(world: World) -> None:
    world.heal()
    upstream, bob = world.upstream, world.tokens["user_b"][0]
    seen = len(upstream.requests)
    answer = world.client.get(_lab(world) + "?x=1", headers=_bearer(bob))
    assert answer.status_code == 200 and answer.json() == {"upstream": "ok"}, answer.text
    [(method, path, headers)] = upstream.requests[seen:]
    assert (method, path) == ("GET", _lab(world) + "?x=1")
    assert headers["authorization"] == f"token {upstream.token}", "the upstream gets its own token"
    assert bob not in repr(headers), "B's nbjobs token reached his Jupyter server"
    seen = len(upstream.requests)
    for role in ROLES:
        if role == "user_b":
            continue
        for token in world.tokens[role] or [None]:
            for method in PROXY_METHODS:
                answer = world.client.request(method, _lab(world), headers=_bearer(token))
                assert answer.text != JsonUpstream.BODY.decode(), (role, method)
    assert upstream.requests[seen:] == [], "a refused caller's request reached B's server"


def test_a_token_in_the_query_becomes_the_lab_cookie_for_b_only(world: World) -> None:
    world.heal()
    try:
        mine = world.client.get(
            _lab(world), params={"token": world.tokens["user_b"][0]}, follow_redirects=False
        )
        assert mine.status_code == 303 and "token=" not in mine.headers["location"], mine.text
        assert "nbjobs_lab=" in mine.headers.get("set-cookie", "")
        for role in ("user_a", "admin", "viewer"):
            theirs = world.client.get(
                _lab(world), params={"token": world.tokens[role][0]}, follow_redirects=False
            )
            assert theirs.status_code != 303 and "set-cookie" not in theirs.headers, (role, theirs.text)
            assert outcome(answer_of(theirs)) == "hidden", (role, theirs.text)
    finally:
        world.client.cookies.clear()  # the jar must not sign later requests in


def test_the_proxy_refuses_with_http_statuses_that_jupyterlab_reads(world: World) -> None:
    """JupyterLab reads HTTP statuses, not ArcGIS envelopes (the save-back's own refusals are real 409s
    and 413s): another user's container must be an HTTP 404, as the route's docstring says, a refused
    token an HTTP error, and a server that is gone a 502 (web/proxy.py: "the route renders it, a 502")."""
    world.heal()
    others = world.client.get(_lab(world), headers=_bearer(world.tokens["user_a"][0]))
    expired = world.client.put(_lab(world), content=b"{}", headers=_bearer(world.tokens["expired"][0]))
    gone = f"http://127.0.0.1:{_free_port()}"
    container, _ = add_lab(world.nb, "bob", world.refs["item"], world.upstream, runtime_id="matrix-gone")
    world.nb.interactive.containers.update(container, address=gone)
    unavailable = world.client.get(_lab(world, container), headers=_bearer(world.tokens["user_b"][0]))
    world.nb.interactive.containers.update(container, status=ContainerStatus.STOPPED)
    assert (others.status_code, expired.status_code >= 400, unavailable.status_code) == (404, True, 502), (
        others.text[:200], expired.status_code, unavailable.text[:200],
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _handshake(world: World, url: str, headers: dict[str, str]) -> WebSocketDisconnect:
    """How a WebSocket handshake that must not be accepted ended."""
    with pytest.raises(WebSocketDisconnect) as ended, world.client.websocket_connect(url, headers=headers):
        pytest.fail(f"the WebSocket to {url} was accepted")
    return ended.value


def test_the_lab_websocket_refuses_others_forged_tokens_and_cross_site_pages(world: World) -> None:
    """Refused before accept (close 1008, which a browser sees as a failed handshake), with nothing asked
    of B's server; B's own token, or his cookie from this server's own page, gets through to it."""
    world.heal()
    url = _lab(world, path="api/kernels/k1/channels")
    bob = world.tokens["user_b"][0]
    own = "http://testserver"  # the TestClient's WebSocket origin (ws://testserver)
    cookie = {"cookie": f"nbjobs_lab={bob}"}
    refused = {
        "A's token": _bearer(world.tokens["user_a"][0]),
        "an admin's token": _bearer(world.tokens["admin"][0]),
        "the viewer's token": _bearer(world.tokens["viewer"][0]),
        "an expired token": _bearer(world.tokens["expired"][0]),
        "a tampered copy of B's token": _bearer(world.tokens["forged"][0]),
        "a random token": _bearer(world.tokens["forged"][1]),
        "no token": {"origin": own},
        "B's token, an unknown container": _bearer(bob),
        "B's cookie from another site": {**cookie, "origin": "https://evil.example"},
        "B's cookie from a look-alike": {**cookie, "origin": "http://testserver.evil.example"},
        "B's cookie, Origin null": {**cookie, "origin": "null"},
        "B's cookie, no Origin": cookie,
    }
    seen = len(world.upstream.requests)
    for why, headers in refused.items():
        target = _lab(world, new_container_id(), "api/kernels/k1/channels") if "unknown" in why else url
        refusal = _handshake(world, target, headers)
        assert not isinstance(refusal, WebSocketDenialResponse), f"{why}: {refusal!r}"
        assert refusal.code == 1008, f"{why}: closed with {refusal.code}"
    assert world.upstream.requests[seen:] == [], "a refused handshake reached B's server"
    # B himself passes every check and reaches his server, which (plain HTTP) refuses the upgrade: 502
    for headers in (_bearer(bob), {**cookie, "origin": own}):
        denied = _handshake(world, url, headers)
        assert isinstance(denied, WebSocketDenialResponse) and denied.status_code == 502, repr(denied)
    assert [m for m, _, _ in world.upstream.requests[seen:]] == ["GET", "GET"]


# -- the webhook sink: the signature, not a token, authorizes -----------------------------------------


@pytest.mark.parametrize("family", ["/rest/events/webhooks/", "/admin/notebooks/webhookReceivers/"])
def test_sink_refuses_unsigned_and_forged_events_whatever_the_token(world: World, family: str) -> None:
    world.heal()
    url = CTX + family + world.refs["receiver"]
    body = b'{"event": "ping"}'
    wrong = base64.b64encode(hmac.new(b"x" * 32, body, hashlib.sha256).digest()).decode()
    jobs = world.nb.store.count(username="bob")
    for role in ROLES:
        for token in world.tokens[role] or [None]:
            auth = {"authorization": f"Bearer {token}"} if token else {}
            unsigned = answer_of(world.client.post(url, content=body, headers=auth))
            forged = answer_of(
                world.client.post(url, content=body, headers={**auth, SIGNATURE_HEADER: wrong})
            )
            assert (unsigned.code, forged.code) == (401, 403), (role, unsigned, forged)
    assert world.nb.store.count(username="bob") == jobs, "a refused event started a job"


# -- a web tool B shares: A may run it, but never sees B's runs ----------------------------------------


def test_a_shared_tool_runs_for_a_without_showing_her_bs_jobs_or_its_admin_view(world: World) -> None:
    world.heal()
    tool_item = world.add_item("bob", "webtool_trivial.ipynb", "Trivial")
    props = {"jsonProperties": {"title": "Trivial", "notebookId": tool_item, "access": "org",
                                "tasks": [{"type": "notebook", "name": "Trivial"}]}}  # fmt: skip
    service = world.nb.webtools.publish(world.user("bob"), props).service_name
    b_job = world.add_gpjob("bob", service)
    task = f"{CTX}/rest/services/{service}/GPServer/Trivial"

    def get(role: str, url: str, **params: str) -> Answer:
        return answer_of(
            world.client.get(url, params={"f": "json", "token": world.tokens[role][0], **params})
        )

    assert service in get("user_a", CTX + "/rest/services").text  # shared: listed and callable
    a_job = json.loads(get("user_a", task + "/submitJob", x="2").text)["jobId"]
    for role, job in (("user_a", b_job), ("user_b", a_job)):  # each other's runs of the shared tool
        other = new_job_id()
        seen, unknown = get(role, f"{task}/jobs/{job}"), get(role, f"{task}/jobs/{other}")
        assert not seen.ok and seen.masked({"job": job}) == unknown.masked({"job": other}), (seen, unknown)
    admin_view = get("user_a", f"{CTX}/admin/services/{service}.GPServer")
    assert admin_view.code == 404, "only the publisher and admins manage a shared tool"
