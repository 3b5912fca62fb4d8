"""What the API fuzzer needs besides schemathesis: a seeded server, the values that reach real rows, the
checks every answer must pass, and the run's totals."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from hypothesis import strategies as st

from nbjobs.clock import ManualClock
from nbjobs.models.accounts import ORG_ADMIN, ORG_USER
from nbjobs.models.interactive import (
    Container,
    ContainerStatus,
    OpenNotebook,
    new_container_id,
    new_notebook_id,
)
from nbjobs.models.jobs import OUTPUT, JobStatus, JobUpdate
from nbjobs.roots.server import Server
from nbjobs.settings import load_settings
from nbjobs.web.errors import UNEXPECTED
from nbjobs.web.views import ORG_ID
from tests.conftest import notebook_bytes

CTX = "/arcgis"
PASSWORD = "correct horse battery"
SECRET = "0123456789abcdef0123456789abcdef"
USERS = ("admin", "alice", "bob")
TOOL_TASK = "Circle_Area"
TOOL_PARAMS = ("radius", "name", "count", "scale_up", "when", "rows", "shape", "data_file", "area", "label",
               "total", "big", "stamp", "out_rows", "out_shape", "out_file")  # fmt: skip
JSON_FIELDS = ("parameters", "notebookParameters", "serviceProperties", "configJSON", "properties",
               "notebookJSON", "templateNotebook")  # fmt: skip
# Keys the server reads from those JSON fields: drawn as dict keys so generated objects get past the first
# lookup and reach the code that types the values.
JSON_KEYS = ("title", "description", "notebookId", "tasks", "type", "name", "jsonProperties", "provider",
             "notebookParameters", "access", "timeout", "maxExecuteNotebookTimeMinutes",
             "asyncJobsCleanAgeHours", "asyncJobsCleanupAgeHours", "webSocketSize",
             "allowHiddenFileDownloads", "maxSnapshotsPerNotebookItem", "idleNotebookThreshold",
             "containerCreatedThreshold", "num", "radius", "notebookRuntimeId", "parameters", "x",
             "")  # fmt: skip

INTEGER_FIELDS = ("num", "start", "partNum", "startDate", "endDate", "maxOccurrences", "expiration",
                  "executionTimeoutInMinutes", "count", "when", "tail")  # fmt: skip
ADMIN_ERROR_KEYS = {"status", "messages", "code"}
PORTAL_ERROR_KEYS = {"code", "message", "details"}
# What a Python failure looks like when it leaks into a body; matched only where the request did not send
# the same text (the API echoes bad values back in its messages).
LEAK = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+|object at 0x[0-9a-f]+"
    r"|\b(?:KeyError|TypeError|AttributeError|ValueError|IndexError|UnboundLocalError|NameError"
    r"|AssertionError|RecursionError|ZeroDivisionError|OverflowError|UnicodeDecodeError|UnicodeEncodeError"
    r"|JSONDecodeError|IntegrityError|OperationalError|DataError|ProgrammingError|StatementError)\b"
    r"|sqlalchemy\.(?:exc|engine|orm)|sqlite3\.\w+Error|psycopg2?\.errors"
)


def build_nbjobs(data_dir: Path) -> Server:
    """The server under test: real SQLite, no workers (jobs stay where the seeds put them), GP execute
    answers at once instead of waiting on a job nobody runs."""
    import time

    settings = load_settings(
        {},
        data_dir=data_dir,
        workers=0,
        max_upload_bytes=64 * 1024,
        webtool_execute_wait_seconds=0.0,
        stream_max_seconds=0.2,  # an event stream (of a job that never ends here) returns
        stream_heartbeat_seconds=0.1,
    )
    nb = Server.from_settings(settings, clock=ManualClock(time.time_ns() // 1_000_000))
    nb.prepare()
    nb.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # fast, still argon2
    nb.users.add("admin", PASSWORD, role=ORG_ADMIN)
    for name in USERS[1:]:
        nb.users.add(name, PASSWORD, role=ORG_USER)
    return nb


class JsonUpstream:
    """A stand-in for a user's Jupyter server: on 127.0.0.1 (random port) in a daemon thread, it answers
    every method on every path with 200 and a small JSON body, and records what it was asked (method,
    path, headers), so a test can prove that a refused request reached nothing."""

    BODY = b'{"upstream": "ok"}'

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.token = secrets.token_hex(16)  # the server's own token, as nbjobs stores it
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(JsonUpstream.BODY)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(JsonUpstream.BODY)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = answer

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> JsonUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def add_lab(
    nb: Server, username: str, item_id: str, upstream: JsonUpstream, *, runtime_id: str = "", node: str = ""
) -> tuple[str, str]:
    """A RUNNING container of ``username`` answering at ``upstream`` and ``item_id`` open in it, written
    straight to the store (no Jupyter runs here); returns (container id, notebook id). The user's live
    container for that runtime, if any, is marked stopped first (one live server per user and runtime)."""
    containers = nb.interactive.containers
    runtime_id = runtime_id or nb.runtimes.default().runtime_id
    now = nb.clock()
    live = containers.live_for(username, runtime_id)
    if live is not None:
        containers.update(live.container_id, status=ContainerStatus.STOPPED, ended=now, reason="replaced")
    host = nb.interactive.host
    container = Container(
        container_id=new_container_id(), username=username, runtime_id=runtime_id,
        node=node or (host.node if host is not None else "local"), status=ContainerStatus.RUNNING,
        created=now, last_activity=now, address=upstream.address, token=upstream.token,
    )  # fmt: skip
    assert containers.add(container), f"{username} has a live container for {runtime_id} already"
    notebook = OpenNotebook(
        notebook_id=new_notebook_id(), container_id=container.container_id, item_id=item_id,
        username=username, path=f"{item_id}.ipynb", opened=now, last_activity=now,
    )  # fmt: skip
    containers.add_notebook(notebook)
    return container.container_id, notebook.notebook_id


@dataclasses.dataclass
class Api:
    """One user's calls over the fuzzer's own in-process session (a requests.Session)."""

    session: Any
    username: str
    token: str

    def post(self, path: str, files: dict | None = None, **data: object) -> dict:
        body = {"f": "json", "token": self.token, **{k: str(v) for k, v in data.items()}}
        answer = self.session.post("https://testserver" + CTX + path, data=body, files=files)
        return answer.json()

    def add_notebook(self, name: str) -> str:
        files = {"file": (name, notebook_bytes(name), "application/x-ipynb+json")}
        answer = self.post(
            f"/sharing/rest/content/users/{self.username}/addItem", files=files, type="Notebook", title=name
        )
        assert answer.get("success") is True, answer
        return answer["id"]


@dataclasses.dataclass
class Seeds:
    """Real rows the fuzzer aims at: alice owns the notebooks, jobs, task, web tool and a running notebook
    container (answering at ``upstream``) with her notebook open in it; the admin the webhook receiver
    (run as alice). ``refresh`` re-creates whatever a destructive operation removed."""

    nb: Server
    admin: Api
    alice: Api
    upstream: JsonUpstream
    item: str = ""
    tool_item: str = ""
    upload: str = ""
    job: str = ""
    ended_job: str = ""
    task: str = ""
    run_task: str = ""
    run: str = ""
    receiver: str = ""
    service: str = ""
    gp_job: str = ""
    snapshot: str = ""
    container: str = ""
    notebook: str = ""

    def refresh(self) -> None:
        nb, alice, admin = self.nb, self.alice, self.admin
        items = nb.items.store
        if not self.item or items.get(self.item) is None:
            self.item = alice.add_notebook("parameters.ipynb")
        if not self.tool_item or items.get(self.tool_item) is None:
            self.tool_item = alice.add_notebook("webtool.ipynb")
        if not self.upload or items.get_upload(self.upload) is None:
            self.upload = alice.post(
                "/sharing/rest/content/users/alice/addItem", multipart="true", type="Notebook", title="parts"
            )["id"]
        if not self.job or nb.store.get(self.job) is None:
            self.job = self._execute()
        if not self.ended_job or nb.store.get(self.ended_job) is None:
            self.ended_job = self._execute()
            self._complete(self.ended_job)
        if not self.task or nb.tasks.store.get(self.task) is None:
            self.task = self._task()
        if not self.run or nb.tasks.store.get_run(self.run) is None:
            self.run_task, self.run = self._run()
        if not self.receiver or nb.webhooks.store.get(self.receiver) is None:
            self.receiver = admin.post(
                "/admin/notebooks/webhookReceivers/create", name="demo", itemId=self.item, secret=SECRET,
                username="alice", signatureHeaders="X-Hub-Signature-256", parameters='{"num": 1}',
            )["webhookReceiver"]["id"]  # fmt: skip
        if not self.service or nb.webtools.store.get(self.service) is None:
            self.service = self._publish()
        if not self.gp_job or nb.store.get(self.gp_job) is None:
            self.gp_job = self._gp_job()
        if not self.snapshot or nb.web.snapshots.store.get(self.item, self.snapshot) is None:
            self.snapshot = self._snapshot()
        container = nb.interactive.containers.get(self.container) if self.container else None
        notebook = nb.interactive.containers.get_notebook(self.notebook) if self.notebook else None
        running = container is not None and container.status == ContainerStatus.RUNNING
        if not running or notebook is None or not notebook.is_open:  # terminated or closed
            self.container, self.notebook = add_lab(nb, "alice", self.item, self.upstream)

    def _snapshot(self) -> str:
        """A snapshot of alice's notebook (room is made if the fuzzer filled its limit)."""
        snapshots = self.nb.web.snapshots.store
        snapshots.delete(self.item, [s.resource_key for s in snapshots.list(self.item)])
        answer = self.alice.post("/admin/notebooks/snapshots/create", itemId=self.item, name="seed")
        assert answer.get("status") == "success", answer
        return answer["snapshotResourceKey"]

    def _execute(self) -> str:
        answer = self.alice.post(
            "/admin/notebooks/executeNotebook", itemId=self.item, updatePortalItem="false",
            notebookParameters='{"name": "Ada"}',
        )  # fmt: skip
        assert answer.get("status") == "success", answer
        return answer["jobId"]

    def _complete(self, job_id: str, results: dict | None = None) -> None:
        nb, now = self.nb, self.nb.clock()
        nb.store.transition(job_id, JobStatus.EXECUTING, now, update=JobUpdate(start_time=now))
        nb.store.put_blob(job_id, OUTPUT, notebook_bytes("trivial.ipynb"), now)
        nb.store.transition(job_id, JobStatus.COMPLETED, now, update=JobUpdate(results=results, end_time=now))

    def _task(self) -> str:
        """A task of alice that fires every minute (room is made if the fuzzer filled her 20 slots)."""
        base = "/sharing/rest/community/users/alice/tasks"
        fields = dict(
            title="fuzz", type="ExecuteNotebook", itemId=self.item, minute="*/1", hour="*", dayOfMonth="*",
            month="*", dayOfWeek="?", maxOccurrences="1000",
            parameters=json.dumps({"notebookParameters": json.dumps({"name": "Ada"})}),
        )  # fmt: skip
        created = self.alice.post(base + "/createTask", **fields)
        if created.get("success") is not True:
            keep = {self.task, self.run_task}
            for task in self.nb.tasks.store.list(owner="alice"):
                if task.task_id not in keep:
                    self.nb.tasks.store.delete(task.task_id)
            created = self.alice.post(base + "/createTask", **fields)
        assert created.get("success") is True, created
        return created["taskId"]

    def _run(self) -> tuple[str, str]:
        """A run: a fresh every-minute task, and the scheduler woken a minute on."""
        task_id = self._task()
        self.nb.clock.advance(60_000)
        self.nb.scheduler.tick()
        runs = self.nb.tasks.store.runs(task_id, 1)
        assert runs, "the scheduler started no run"
        return task_id, runs[0].run_id

    def _gp_job(self) -> str:
        """A succeeded web tool job; the tool is published anew if the fuzzer changed it past use."""
        path = f"/rest/services/{self.service}/GPServer/{TOOL_TASK}/submitJob"
        answer = self.alice.post(path, radius="2", name="x")
        if "jobId" not in answer:
            self.nb.webtools.store.delete(self.service)
            self.tool_item = self.alice.add_notebook("webtool.ipynb")
            self.service = self._publish()
            path = f"/rest/services/{self.service}/GPServer/{TOOL_TASK}/submitJob"
            answer = self.alice.post(path, radius="2", name="x")
        assert "jobId" in answer, answer
        self._complete(answer["jobId"], results={"outputValues": {"area": {"value": 12.5}}})
        return answer["jobId"]

    def _publish(self) -> str:
        props = {
            "description": "circle maths",
            "provider": "notebooks",
            "type": "GPServer",
            "jsonProperties": {
                "title": "Circle Area",
                "notebookId": self.tool_item,
                "tasks": [{"type": "notebook", "name": "Circle Area"}],
            },
        }
        answer = self.alice.post("/admin/services/createService", serviceProperties=json.dumps(props))
        assert answer.get("status") == "success", answer
        return answer["itemId"]

    # -- values the fuzzer mixes into generated requests -------------------------------------------------

    def path_values(self, name: str) -> list[str]:
        """Known values of a path parameter (plus near misses: case, padding, the other user's name)."""
        return {
            "username": [*USERS, "ALICE", "nobody"],
            "folder": ["root", ""],
            "item_id": [self.item, self.tool_item, self.upload, self.item.upper()],
            "job_id": [self.job, self.ended_job, self.gp_job, self.job + "x"],
            "task_id": [self.task, self.run_task],
            "run_id": [self.run],
            "receiver_id": [self.receiver],
            "service_name": [self.service, self.service.upper()],
            "task_name": [TOOL_TASK, "Circle Area"],
            "param_name": list(TOOL_PARAMS),
            "runtime_id": [self.nb.runtimes.default().runtime_id],
            "portal_id": ["self", ORG_ID],
            "container_id": [self.container, self.container.upper(), new_container_id()],
            "notebook_id": [self.notebook, self.notebook.upper(), new_notebook_id()],
        }.get(name, [])

    def baseline(self, path: str) -> dict[str, str] | None:
        """A valid form for the operations that create or change things, so that one bad field at a time
        reaches the code past the checks of the others."""
        schedule = {"minute": "*/5", "hour": "*", "dayOfMonth": "*", "month": "*", "dayOfWeek": "?"}
        forms = {
            "/tasks/createTask": {"title": "t", "type": "ExecuteNotebook", "itemId": self.item, **schedule},
            "/tasks/{task_id}/update": {"title": "t", **schedule},
            "/executeNotebook": {"itemId": self.item, "updatePortalItem": "false"},
            "/configuration/update": {"configJSON": '{"maxExecuteNotebookTimeMinutes": 60}'},
            "/system/properties/update": {"properties": '{"asyncJobsCleanupAgeHours": 24}'},
            "/webhookReceivers/create": {"name": "w", "itemId": self.item, "secret": SECRET,
                                         "username": "alice", "signatureHeaders": "X-Hub-Signature-256"},
            "/submitJob": {"radius": "2", "name": "x"},
            "/execute": {"radius": "2", "name": "x"},
            "/addItem": {"type": "Notebook", "title": "t"},
            "/runs/{run_id}/update": {"status": "failed", "result": "r"},
            "/admin/services": {"start": "1", "num": "10"},
            "/snapshots/create": {"itemId": self.item, "name": "s"},
            "/snapshots/restore": {"itemId": self.item, "resourceKey": self.snapshot},
            "/snapshots/convertToItem": {"itemId": self.item, "resourceKey": self.snapshot,
                                         "notebookTitle": "t"},
            "/openNotebook": {"itemId": self.item},
        }  # fmt: skip
        return next((form for suffix, form in forms.items() if path.endswith(suffix)), None)

    def field_values(self, name: str) -> list[str]:
        """Known values of a query or form field."""
        big = ["99999999999999999999", "4611686018427387904", "-9223372036854775809"]
        found = self._field_values(name)
        return [*found, *big] if name in INTEGER_FIELDS else found

    def _field_values(self, name: str) -> list[str]:
        return {
            "itemId": [self.item, self.tool_item, self.upload],
            "username": list(USERS),
            "notebookRuntimeId": [self.nb.runtimes.default().runtime_id],
            "jobId": [self.job, self.ended_job],
            "partNum": ["1", "2", "0", "-1", "1e3", "10001"],
            "num": ["0", "1", "-1", "100000", "1.5", "nan", "1e400"],
            "start": ["0", "1", "2", "-5", "1e400"],
            "multipart": ["true", "false"],
            "detail": ["true", "false"],
            "startDate": ["0", "-1", "99999999999999999999"],
            "endDate": ["0", "1", "99999999999999999999"],
            "maxOccurrences": ["0", "1", "999999999999999999999"],
            "minute": ["*", "*/1", "61", "*/0", "1-", ",", "5/"],
            "hour": ["*", "25", "*/0"],
            "dayOfMonth": ["*", "?", "32", "L", "0"],
            "month": ["*", "13", "JAN", "0"],
            "dayOfWeek": ["?", "*", "8", "MON-FRI", "7"],
            "timeZone": ["UTC", "Europe/Paris", "Nowhere/Else", "../etc"],
            "overlapPolicy": ["skip", "queue", "x"],
            "executionTimeoutInMinutes": ["0", "1", "999999999999999999999", "1.5"],
            "expiration": ["1", "0", "-1", "99999999999999999999"],
            "maxCpu": ["1", "0.5", "inf", "1e308"],
            "maxMemory": ["1", "1e308"],
            "maxWallMinutes": ["1", "1e308"],
            "maxOutputBytes": ["1", "1e308", "1.5"],
            "status": ["failed", "completed", "executing", "x"],
            "type": ["Notebook", "ExecuteNotebook", "GPServer", "x"],
            "radius": ["1", "-1", "nan", "1e400"],
            "when": ["0", "86400000", "-99999999999999999999", "2026-01-02"],
            "count": ["1", "9999999999999999999999"],
            "rows": ['{"features": []}', "[]", "{"],
            "shape": ['{"features": [{"attributes": {"n": 1}}]}', "1"],
            "resourceKey": [self.snapshot, "snapshot-x.json", "../" + self.snapshot],
            "resourceKeys": [self.snapshot, json.dumps([self.snapshot]), "[", "[1]", "[]", '{"a": 1}'],
            "preserveCurrentAsSnapshot": ["true", "false", "x"],
            "privateAccess": ["true", "false", "x"],
            "tail": ["0", "1", "10000", "10001", "-1", "1.5"],
            "async": ["true", "false", "x"],
            "templateId": ["", self.item, "x"],
        }.get(name, [])


@functools.cache
def json_values() -> st.SearchStrategy[str]:
    """JSON text for the fields the server parses as JSON: any JSON, biased to objects with known keys."""
    # Python's json also reads NaN, Infinity and integers of any size: all of them reach the server.
    numbers = st.integers() | st.sampled_from([2**63, -(2**63) - 1, 10**30]) | st.floats()
    leaves = st.none() | st.booleans() | numbers | st.text(max_size=20)

    def nested(inner: st.SearchStrategy) -> st.SearchStrategy:
        return st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(JSON_KEYS), inner, max_size=4)

    values = st.recursive(leaves, nested, max_leaves=12)
    objects = st.dictionaries(st.sampled_from(JSON_KEYS), values, min_size=1, max_size=5)
    return st.one_of(objects, values).map(json.dumps)


@functools.cache
def file_values(nb_item: bytes) -> st.SearchStrategy[bytes]:
    """Uploads: a real notebook, notebooks with one part replaced by random JSON, and random JSON."""
    document = json.loads(nb_item)

    def mutate(pair: tuple[str, object]) -> bytes:
        key, value = pair
        changed = dict(document)
        changed[key] = value
        return json.dumps(changed).encode()

    any_json = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )
    keys = st.sampled_from(["cells", "metadata", "nbformat", "nbformat_minor"])
    as_bytes = any_json.map(lambda v: json.dumps(v).encode())
    return st.one_of(st.just(nb_item), st.tuples(keys, any_json).map(mutate), as_bytes)


def signed(body: bytes) -> dict[str, str]:
    """The headers of an event the seeded webhook receiver accepts."""
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def prepare_schema(doc: dict[str, Any]) -> dict[str, Any]:
    """The server's OpenAPI document as the fuzzer uses it: ``token`` is left to the test (it sends a real
    one), and ``f`` is drawn mostly from the three formats so most answers are JSON the checks can read."""
    fmt = {"anyOf": [{"enum": ["json", "pjson", "html", "JSON", " json "]}, {"type": "string"}]}
    for operations in doc["paths"].values():
        for operation in operations.values():
            kept = []
            for param in operation.get("parameters", []):
                if param.get("in") != "path" and param["name"] == "token":
                    continue
                if param.get("in") != "path" and param["name"] == "f":
                    param = {**param, "schema": fmt}
                kept.append(param)
            operation["parameters"] = kept
            for media in operation.get("requestBody", {}).get("content", {}).values():
                props = media.get("schema", {}).get("properties", {})
                props.pop("token", None)
                if "f" in props:
                    props["f"] = fmt
    return doc


def is_admin_path(path: str) -> bool:
    return path == CTX + "/admin" or path.startswith(CTX + "/admin/")


def problems(path: str, status: int, content_type: str, body: bytes, sent: str) -> list[str]:
    """Everything wrong with one answer: 5xx, leaked Python text, JSON that does not parse, and an error
    body out of its documented shape."""
    found = []
    if status >= 500:
        found.append(f"HTTP {status}")
    text = body.decode("utf-8", errors="replace")
    if UNEXPECTED in text:  # an unhandled exception, masked as an HTTP 200 envelope with code 500
        found.append("the server failed unexpectedly (code 500 envelope)")
    for match in LEAK.finditer(text):
        if match.group(0) not in sent:
            found.append(f"Python internals in the body: {match.group(0)!r}")
            break
    if "json" not in content_type:
        if 400 <= status < 500 and "html" not in content_type:
            found.append(f"HTTP {status} with a {content_type!r} body")
        return found
    try:
        data = strict_json(text)
    except ValueError:
        return [*found, f"the {content_type} body is not JSON: {text[:200]!r}"]
    found.extend(shape_problems(path, status, data))
    return found


def strict_json(text: str) -> Any:
    """JSON as RFC 8259 has it: Python's bare NaN and Infinity are not JSON (JavaScript refuses them)."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def shape_problems(path: str, status: int, data: Any) -> list[str]:
    """The documented error envelopes, for every error body (and any non-2xx JSON body must be one)."""
    if not isinstance(data, dict):
        return []
    admin = is_admin_path(path)
    is_admin_error = data.get("status") == "error"
    is_portal_error = "error" in data
    if not (is_admin_error or is_portal_error):
        return [f"HTTP {status} with a body that is no error envelope: {data!r:.200}"] * (status >= 400)
    if admin and is_portal_error and not is_admin_error:
        return [f"portal error envelope on an admin path: {data!r:.200}"]
    if admin:
        messages, code = data.get("messages"), data.get("code")
        good = (
            set(data) == ADMIN_ERROR_KEYS
            and isinstance(messages, list)
            and bool(messages)
            and all(isinstance(m, str) for m in messages)
            and isinstance(code, int)
            and not isinstance(code, bool)
        )
        return [] if good else [f"admin error envelope out of shape: {data!r:.300}"]
    if is_admin_error:
        return [f"admin error envelope on a portal/rest path: {data!r:.200}"]
    error = data["error"]
    good = (
        isinstance(error, dict)
        and set(error) == PORTAL_ERROR_KEYS
        and isinstance(error["code"], int)
        and not isinstance(error["code"], bool)
        and isinstance(error["message"], str)
        and isinstance(error["details"], list)
        and all(isinstance(d, str) for d in error["details"])
    )
    return [] if good else [f"portal error envelope out of shape: {data!r:.300}"]


class UnexpectedErrors(logging.Handler):
    """Collects what web/errors.py logs for an exception it did not expect (the traceback goes there)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        taken = [
            f"logged: {r.getMessage()}: {r.exc_info[1]!r}" if r.exc_info else f"logged: {r.getMessage()}"
            for r in self.records
        ]
        self.records.clear()
        return taken


@dataclasses.dataclass
class Totals:
    """What one fuzz run did, as the report quotes it."""

    examples_per_operation: dict[str, int] = dataclasses.field(default_factory=dict)
    operations: set[str] = dataclasses.field(default_factory=set)
    examples: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    answers: dict[str, int] = dataclasses.field(default_factory=dict)
    by_mode: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def count(self, content_type: str, body: bytes) -> None:
        """Tally an answer as an error envelope, another JSON answer, or another content type."""
        kind = "other content"
        if "json" in content_type:
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            error = isinstance(data, dict) and (data.get("status") == "error" or "error" in data)
            kind = "error envelope" if error else "json resource"
        self.answers[kind] = self.answers.get(kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "examples_per_operation": self.examples_per_operation,
            "operations_fuzzed": len(self.operations),
            "examples_sent": self.examples,
            "examples_by_auth_mode": self.by_mode,
            "answers": self.answers,
            "failures": len(self.failures),
            "failed": self.failures,
            "seconds": round(self.seconds, 1),
        }
