"""Input limits over HTTP (docs/limits.md): request body, upload, notebook parameters and jobs per user.
Each refusal answers the route's own envelope and creates nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from nbjobs.clock import ManualClock
from nbjobs.models.accounts import ORG_ADMIN, ORG_USER
from nbjobs.models.jobs import JobStatus
from nbjobs.roots.server import Server
from nbjobs.settings import load_settings
from nbjobs.store.engine import open_store
from nbjobs.store.tables import item_upload_parts, item_uploads, items, job_blobs, jobs
from tests.conftest import notebook_bytes
from tests.unit.contracts.test_jobs import make_job
from tests.web.conftest import CTX, PASSWORD, Caller
from tests.web.test_webtools_admin import publish

KIB = 1024
UPLOAD = 64 * KIB  # item files
REQUEST = 16 * KIB  # every other body
EXECUTE = "/admin/notebooks/executeNotebook"
USERS = "/sharing/rest/content/users"


@pytest.fixture
def nb(tmp_path: Path, clock: ManualClock) -> Iterator[Server]:
    """The web tests' app (no workers, real SQLite) with small limits, so each is cheap to cross."""
    settings = load_settings(
        {},
        data_dir=tmp_path,
        workers=0,
        max_upload_bytes=UPLOAD,
        max_request_bytes=REQUEST,
        max_parameters=5,
        max_parameter_bytes=4 * KIB,
        max_queued_jobs_per_user=3,
    )
    app = Server.from_settings(settings, clock=clock)
    app.prepare()
    app.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    app.users.add("admin", PASSWORD, role=ORG_ADMIN)
    app.users.add("alice", PASSWORD, role=ORG_USER)
    app.users.add("bob", PASSWORD, role=ORG_USER)
    app.users.add("viewer", PASSWORD, role=ORG_USER, privileges=("portal:user:viewOrgItems",))
    yield app
    app.store.close()


def _rows(nb: Server, table) -> int:  # noqa: ANN001
    with nb.store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _admin_error(answer, code: int) -> str:  # noqa: ANN001
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "error" and body["code"] == code, body
    return " ".join(body["messages"])


def _portal_error(answer, code: int) -> str:  # noqa: ANN001
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]["message"]


def _notebook(size: int) -> bytes:
    """A valid notebook of about ``size`` bytes."""
    data = json.loads(notebook_bytes("trivial.ipynb"))
    data["metadata"]["padding"] = ""
    data["metadata"]["padding"] = "x" * (size - len(json.dumps(data)))
    return json.dumps(data).encode()


# -- request body ------------------------------------------------------------------------------------


def test_an_ordinary_body_over_the_request_limit_is_refused_and_creates_nothing(alice: Caller, nb):
    item = alice.add_notebook("parameters.ipynb")
    padding = "x" * (REQUEST + KIB)  # well under the upload limit, over the request limit
    message = _admin_error(alice.client.post(
        CTX + EXECUTE, data={"f": "json", "token": alice.token, "itemId": item, "padding": padding}
    ), 413)  # fmt: skip
    assert f"larger than the {REQUEST} bytes" in message
    assert _portal_error(
        alice.client.post(CTX + f"{USERS}/alice", data={"f": "json", "token": alice.token, "x": padding}), 413
    ).startswith("The request body is larger")
    assert nb.store.count() == 0
    assert alice.execute(item)["status"] == "success"  # a body under the limit still works


def test_a_chunked_body_without_content_length_is_counted(alice: Caller, nb):
    item = alice.add_notebook("parameters.ipynb")

    def chunks() -> Iterator[bytes]:
        yield f"f=json&token={alice.token}&itemId={item}&padding=".encode()
        for _ in range(40):
            yield b"x" * KIB

    answer = alice.client.post(
        CTX + EXECUTE, content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert "content-length" not in answer.request.headers
    assert f"larger than the {REQUEST} bytes" in _admin_error(answer, 413)
    assert nb.store.count() == 0


def test_a_chunked_upload_over_the_upload_limit_is_refused(alice: Caller, nb):
    boundary = "limitsboundary"

    def chunks() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\nNotebook\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.ipynb"\r\n'
            "Content-Type: application/x-ipynb+json\r\n\r\n"
        ).encode()
        for _ in range(UPLOAD // KIB + 1024 + 64):  # past the upload limit and its multipart slack
            yield b"x" * KIB
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = alice.client.post(
        CTX + f"{USERS}/alice/addItem",
        params={"f": "json", "token": alice.token},
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "larger than" in _portal_error(answer, 413)
    assert _rows(nb, items) == 0


def test_uploads_keep_the_larger_upload_limit(alice: Caller, nb):
    data = _notebook(40 * KIB)  # over the request limit, under the upload limit
    files = {"file": ("big.ipynb", data, "application/x-ipynb+json")}
    added = alice.post(f"{USERS}/alice/addItem", files=files, type="Notebook").json()
    assert added["success"] is True, added
    updated = alice.post(f"{USERS}/alice/items/{added['id']}/update", files=files).json()
    assert updated["success"] is True, updated
    started = alice.post(f"{USERS}/alice/addItem", multipart="true", type="Notebook").json()["id"]
    part = {"file": ("p1", data, "application/octet-stream")}
    assert alice.post(f"{USERS}/alice/items/{started}/addPart", files=part, partNum=1).json()["success"]
    assert alice.post(f"{USERS}/alice/items/{started}/commit").json()["success"] is True
    assert nb.items.get(alice_principal(nb), started).size == len(data)


def alice_principal(nb: Server):  # noqa: ANN201
    return nb.users.get("alice").principal()


# -- upload size -------------------------------------------------------------------------------------


def test_an_upload_over_the_limit_leaves_no_item_and_no_blob(alice: Caller, nb):
    for size in (UPLOAD + 4 * KIB, 2 * 1024 * KIB):  # over the item limit; over the body limit too
        files = {"file": ("big.ipynb", _notebook(size), "application/x-ipynb+json")}
        answer = alice.client.post(
            CTX + f"{USERS}/alice/addItem",
            data={"f": "json", "token": alice.token, "type": "Notebook"},
            files=files,
        )
        assert "larger than" in _portal_error(answer, 413)
    assert (_rows(nb, items), _rows(nb, item_uploads), _rows(nb, item_upload_parts)) == (0, 0, 0)
    started = alice.post(f"{USERS}/alice/addItem", multipart="true", type="Notebook").json()["id"]
    first = {"file": ("p1", b"x" * (UPLOAD - KIB), "application/octet-stream")}
    second = {"file": ("p2", b"x" * (2 * KIB), "application/octet-stream")}
    assert alice.post(f"{USERS}/alice/items/{started}/addPart", files=first, partNum=1).json()["success"]
    refused = alice.post(f"{USERS}/alice/items/{started}/addPart", files=second, partNum=2)
    assert f"larger than the {UPLOAD} bytes" in _portal_error(refused, 413)
    assert nb.items.store.part_sizes(started) == {1: UPLOAD - KIB}  # the refused part was not kept
    assert _rows(nb, items) == 0


# -- notebook parameters -----------------------------------------------------------------------------


def test_too_many_parameters_name_the_limit_and_create_no_job(alice: Caller, nb):
    item = alice.add_notebook("parameters.ipynb")
    six = json.dumps({f"p{i}": i for i in range(6)})
    message = _admin_error(alice.client.post(CTX + EXECUTE, data={
        "f": "json", "token": alice.token, "itemId": item, "notebookParameters": six}), 400)  # fmt: skip
    assert "6 parameters" in message and "at most 5" in message and "NBJOBS_MAX_PARAMETERS" in message
    assert nb.store.count() == 0
    five = json.dumps({f"p{i}": i for i in range(5)})
    assert alice.execute(item, notebookParameters=five)["status"] == "success"


def test_parameters_over_the_byte_limit_name_the_limit_and_create_no_job(alice: Caller, nb):
    item = alice.add_notebook("parameters.ipynb")
    big = json.dumps({"name": "é" * (2 * KIB + 10)}, ensure_ascii=False)  # 2 KiB characters, over 4 KiB
    answer = alice.client.post(
        CTX + EXECUTE, data={"f": "json", "token": alice.token, "itemId": item, "notebookParameters": big}
    )
    message = _admin_error(answer, 413)
    assert f"at most {4 * KIB}" in message and "NBJOBS_MAX_PARAMETER_BYTES" in message
    assert nb.store.count() == 0 and _rows(nb, job_blobs) == 0


@pytest.mark.parametrize("depth", [101, 150, 2000])
def test_a_depth_bomb_in_notebook_parameters_is_a_clean_400(alice: Caller, nb, depth: int):
    item = alice.add_notebook("parameters.ipynb")
    bomb = '{"name": ' + "[" * depth + "]" * depth + "}"
    answer = alice.client.post(
        CTX + EXECUTE, data={"f": "json", "token": alice.token, "itemId": item, "notebookParameters": bomb}
    )
    assert "nested too deeply" in _admin_error(answer, 400)
    assert nb.store.count() == 0
    deep = '{"name": ' + "[" * 100 + "]" * 100 + "}"  # the documented maximum is accepted
    assert alice.execute(item, notebookParameters=deep)["status"] == "success"


def test_depth_bombs_in_other_json_fields_are_clean_400s(alice: Caller, admin: Caller, nb):
    bomb = "[" * 2000 + "]" * 2000
    item = alice.add_notebook("parameters.ipynb")
    task = alice.post(
        "/sharing/rest/community/users/alice/tasks/createTask",
        title="t", type="ExecuteNotebook", itemId=item, minute="0", hour="*", dayOfMonth="*", month="*",
        dayOfWeek="?", parameters=json.dumps({"notebookParameters": '{"a": ' + bomb + "}"}),
    )  # fmt: skip
    assert "nested too deeply" in _portal_error(task, 400)
    config = admin.post("/admin/notebooks/configuration/update", configJSON='{"a": ' + bomb + "}")
    assert "nested too deeply" in _admin_error(config, 400)
    tags = alice.post(f"{USERS}/alice/items/{item}/update", tags=bomb)
    assert "tags" in _portal_error(tags, 400)
    words = alice.post(f"{USERS}/alice/items/{item}/update", tags="[" * 300 + "]" * 300)
    assert "tags" in _portal_error(words, 400)  # parsed, but not a list of words


def test_web_tool_inputs_count_against_the_parameter_limits(alice: Caller, nb):
    tool = publish(alice, alice.add_notebook("webtool.ipynb"), "Circle Area")["itemId"]
    task = f"/rest/services/{tool}/GPServer/Circle_Area/submitJob"
    too_big = alice.post(task, name="x" * (5 * KIB))
    assert "NBJOBS_MAX_PARAMETER_BYTES" in _portal_error(too_big, 413)
    bomb = '{"features": [{"attributes": {"n": ' + "[" * 2000 + "]" * 2000 + "}}]}"
    deep = alice.post(task, rows=bomb)
    assert "nested too deeply" in _portal_error(deep, 400)
    assert nb.store.count() == 0
    assert alice.post(task, name="small").json()["jobId"]


# -- jobs per user -----------------------------------------------------------------------------------


def test_queued_jobs_per_user_are_capped_with_too_many_jobs(alice: Caller, bob: Caller, admin: Caller, nb):
    item = alice.add_notebook("parameters.ipynb")
    ids = [alice.execute(item)["jobId"] for _ in range(3)]
    nb.store.transition(ids[0], JobStatus.EXECUTING, nb.clock())  # running jobs count as well as waiting
    refused = alice.client.post(CTX + EXECUTE, data={"f": "json", "token": alice.token, "itemId": item})
    message = _admin_error(refused, 429)
    assert message.startswith("Too many jobs") and "3 jobs" in message
    assert "NBJOBS_MAX_QUEUED_JOBS_PER_USER" in message
    assert nb.store.count(username="alice") == 3 and _rows(nb, job_blobs) == 3
    assert bob.execute(bob.add_notebook("parameters.ipynb"))["status"] == "success"  # per user
    admin_item = admin.add_notebook("parameters.ipynb")
    assert [admin.execute(admin_item).get("status") for _ in range(4)][-1] == "error"  # admins too
    alice.post(f"/admin/notebooks/jobs/{ids[1]}/cancel")  # an ended job frees its place
    assert nb.store.get(ids[1]).status == JobStatus.CANCELLED
    assert alice.execute(item)["status"] == "success"


def test_the_queued_cap_holds_under_concurrent_submits(alice: Caller, nb):
    item = alice.add_notebook("parameters.ipynb")
    user = nb.users.get("alice")
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def submit() -> None:
        barrier.wait()
        try:
            nb.notebooks.execute(user, item)
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["JobLimitReached"] * 5 + ["ok"] * 3
    assert nb.store.count(username="alice") == 3


def test_the_queued_cap_is_exact_on_postgresql(postgres_url: str, tmp_path: Path):
    store = open_store(load_settings({}, data_dir=tmp_path, database_url=postgres_url))
    try:
        barrier = threading.Barrier(10)
        created: list[bool] = []

        def create() -> None:
            job = make_job(username="carol")
            barrier.wait()
            created.append(store.create(job, b"{}", max_active=4))

        threads = [threading.Thread(target=create) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(created) == [False] * 6 + [True] * 4
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 4
            assert conn.execute(select(func.count()).select_from(job_blobs)).scalar_one() == 4
        assert store.create(make_job(username="dave"), b"{}", max_active=4)  # another user is not held up
    finally:
        store.close()


# -- fixed form limits and the documentation ---------------------------------------------------------


def test_too_many_form_fields_and_an_oversized_field_are_400s(alice: Caller, nb):
    item = alice.add_notebook("parameters.ipynb")
    fields = {"f": "json", "token": alice.token, "itemId": item, **{f"k{i}": "" for i in range(1001)}}
    many = alice.client.post(CTX + EXECUTE, data=fields)
    assert "Too many fields. Maximum number of fields is 1000." in _admin_error(many, 400)
    text = alice.post(f"{USERS}/alice/addItem", type="Notebook", text="x" * (REQUEST + 1))  # a form upload
    assert _portal_error(text, 400) == f"Field exceeded maximum size of {REQUEST // KIB}KB."
    small = {"file": ("t.ipynb", _notebook(2 * KIB), "application/x-ipynb+json")}
    part = alice.post(f"{USERS}/alice/addItem", files=small, type="Notebook", title="x" * (REQUEST + 1))
    assert _portal_error(part, 400) == f"Part exceeded maximum size of {REQUEST // KIB}KB."
    assert nb.store.count() == 0 and _rows(nb, items) == 1  # the notebook added first, nothing since


def test_the_documented_defaults_are_the_settings_defaults():
    import re

    from nbjobs.settings import FIELDS, Settings

    doc = (Path(__file__).parents[2] / "docs" / "limits.md").read_text()
    rows = re.findall(r"^\| [^|]+ \| `(NBJOBS_[A-Z_]+)` \| `(\d+)`", doc, flags=re.M)
    assert len(rows) >= 12
    field_of = {f.env: f.name for f in FIELDS.values()}
    defaults = Settings()
    for var, documented in rows:
        assert defaults.value_of(field_of[var]) == int(documented), var
    for var in ("NBJOBS_MAX_REQUEST_BYTES", "NBJOBS_MAX_PARAMETERS", "NBJOBS_MAX_PARAMETER_BYTES",
                "NBJOBS_MAX_QUEUED_JOBS_PER_USER", "NBJOBS_MAX_TOKEN_MINUTES"):  # fmt: skip
        assert load_settings({var: "7"}).value_of(field_of[var]) == 7
        assert var in doc


def test_a_job_list_answers_at_most_ten_thousand_jobs(admin):
    for path, key in (("/admin/notebooks/jobs", "asyncNotebookJobs"), ("/admin/system/jobs", "asyncJobs")):
        over = admin.get(path, num="10001").json()
        assert over["code"] == 400 and "must be at most 10000" in over["messages"][0], over
        assert key in admin.get(path, num="10000").json()


def test_the_app_s_upload_forms_have_the_upload_limit_too(alice: Caller, nb):
    from nbjobs.store.tables import items

    data = _notebook(40 * KIB)  # over the request limit, under the upload limit
    body = {"token": alice.token}  # an explicit token: no CSRF check (docs/app.md)
    files = {"file": ("big.ipynb", data, "application/x-ipynb+json")}
    added = alice.client.post(CTX + "/app/notebooks/upload", data=body, files=files, follow_redirects=False)
    assert added.status_code == 303, added.text[:500]
    assert _rows(nb, items) == 1
    too_big = {"file": ("huge.ipynb", _notebook(2 * UPLOAD), "application/x-ipynb+json")}
    refused = alice.client.post(CTX + "/app/notebooks/upload", data=body, files=too_big)
    assert "larger than" in refused.text and _rows(nb, items) == 1
