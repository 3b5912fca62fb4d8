"""Security basics: argon2 password hashes, hashed tokens, the sign-in lockout, security headers on every
response and the sandboxed HTML view of an executed notebook."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select

from nbjobs.clock import ManualClock
from nbjobs.errors import StoreError, TooManyLogons
from nbjobs.models.accounts import ORG_ADMIN, ORG_USER
from nbjobs.models.jobs import OUTPUT, JobStatus
from nbjobs.roots.server import Server
from nbjobs.service.accounts.login_limit import LoginLimiter
from nbjobs.settings import load_settings
from nbjobs.store import tables
from nbjobs.web.app import create_app
from tests.web.conftest import CTX, PASSWORD

MAX_FAILURES = 3
MAX_PER_ADDRESS = 5
WINDOW_S = 60
LOCKOUT_S = 120
LOCKED = "Too many invalid logon attempts. Please try again later."
PORTAL_LOCKED = {"error": {"code": 400, "message": "Unable to generate token.", "details": [LOCKED]}}
ADMIN_LOCKED = {"status": "error", "messages": ["Unable to generate token.", LOCKED], "code": 400}


@pytest.fixture
def nb(tmp_path: Path, clock: ManualClock) -> Iterator[Server]:
    """The conftest server, with a small lockout configured through the settings."""
    settings = load_settings(
        {
            "NBJOBS_LOGIN_MAX_FAILURES": str(MAX_FAILURES),
            "NBJOBS_LOGIN_MAX_FAILURES_PER_ADDRESS": str(MAX_PER_ADDRESS),
            "NBJOBS_LOGIN_WINDOW_SECONDS": str(WINDOW_S),
            "NBJOBS_LOGIN_LOCKOUT_SECONDS": str(LOCKOUT_S),
        },
        data_dir=tmp_path,
        workers=0,
        max_upload_bytes=64 * 1024,
    )
    app = Server.from_settings(settings, clock=clock)
    app.prepare()
    app.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    app.users.add("admin", PASSWORD, role=ORG_ADMIN)
    app.users.add("alice", PASSWORD, role=ORG_USER)
    app.users.add("bob", PASSWORD, role=ORG_USER)
    yield app
    app.store.close()


def _sign_in(client: TestClient, username: str = "alice", password: str = PASSWORD, *, admin: bool = False):
    path = "/admin/generateToken" if admin else "/sharing/rest/generateToken"
    return client.post(CTX + path, data={"f": "json", "username": username, "password": password}).json()


def _fail(client: TestClient, username: str = "alice", times: int = 1) -> None:
    for _ in range(times):
        answer = _sign_in(client, username, "wrong password")
        assert answer["error"]["details"] == ["Invalid username or password."], answer


# -- secrets at rest ----------------------------------------------------------------------------------------


def _rows(nb: Server, table) -> list[dict]:
    with nb.store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(table))]


def test_passwords_are_stored_as_argon2id_hashes(nb):
    rows = {row["username"]: row["password_hash"] for row in _rows(nb, tables.users)}
    assert set(rows) == {"admin", "alice", "bob"}
    for stored in rows.values():
        assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
        assert PASSWORD not in stored
        assert PasswordHasher().verify(stored, PASSWORD)
    assert len(set(rows.values())) == 3  # salted: the same password hashes differently per user


def test_a_hash_with_old_parameters_is_rehashed_at_sign_in(client, nb):
    nb.users.hasher = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)  # stronger settings
    assert "token" in _sign_in(client)
    stored = {row["username"]: row["password_hash"] for row in _rows(nb, tables.users)}
    assert stored["alice"].startswith("$argon2id$v=19$m=2048,t=2,p=1$")
    assert stored["bob"].startswith("$argon2id$v=19$m=1024,t=1,p=1$")  # untouched until bob signs in
    assert "token" in _sign_in(client)  # the new hash verifies


def test_the_token_table_holds_only_hashes(client, nb):
    token = _sign_in(client)["token"]
    rows = _rows(nb, tables.tokens)
    assert [row["token_hash"] for row in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in json.dumps(rows, default=str)


# -- sign-in lockout ----------------------------------------------------------------------------------------


def test_failures_lock_the_username_even_for_the_right_password(client, clock):
    _fail(client, times=MAX_FAILURES)
    assert _sign_in(client) == PORTAL_LOCKED  # the right password does not open an active lock
    assert _sign_in(client, admin=True) == ADMIN_LOCKED
    assert "token" in _sign_in(client, "bob")  # another name from the same address is not locked
    clock.advance(LOCKOUT_S * 1000 - 1)
    assert _sign_in(client) == PORTAL_LOCKED  # attempts during the lock did not extend it
    clock.advance(1)
    assert "token" in _sign_in(client)


def test_failures_outside_the_window_do_not_count(client, clock):
    _fail(client, times=MAX_FAILURES - 1)
    clock.advance(WINDOW_S * 1000)
    _fail(client, times=MAX_FAILURES - 1)
    assert "token" in _sign_in(client)


def test_a_success_clears_the_usernames_failures(client):
    _fail(client, times=MAX_FAILURES - 1)
    assert "token" in _sign_in(client)
    _fail(client, times=MAX_FAILURES - 1)
    assert "token" in _sign_in(client)


def test_unknown_names_count_against_the_address(client, nb, clock):
    for n in range(MAX_PER_ADDRESS):
        _fail(client, f"nobody{n}")  # one failure per name: no username reaches its own limit
    assert _sign_in(client, "bob") == PORTAL_LOCKED
    with TestClient(create_app(nb.web), base_url="https://testserver",
                    client=("198.51.100.7", 40000)) as elsewhere:  # fmt: skip
        assert "token" in _sign_in(elsewhere, "bob")  # the same name from another address
    clock.advance(LOCKOUT_S * 1000)
    assert "token" in _sign_in(client, "bob")


def test_oauth_sign_in_is_locked_too(client):
    authorize = client.get(CTX + "/sharing/rest/oauth2/authorize",
                           params={"client_id": "arcgisnotebooks", "response_type": "token",
                                   "redirect_uri": "urn:ietf:wg:oauth:2.0:oob"})  # fmt: skip
    state = re.search(r"name='oauth_state' value='([^']+)'", authorize.text)
    assert state is not None
    signin = {"oauth_state": state.group(1), "username": "alice"}
    for _ in range(MAX_FAILURES):
        page = client.post(CTX + "/sharing/oauth2/signin", data={**signin, "password": "wrong password"})
        assert "Invalid username or password." in page.text
    locked = client.post(CTX + "/sharing/oauth2/signin", data={**signin, "password": PASSWORD},
                         follow_redirects=False)  # fmt: skip
    assert locked.status_code == 200 and LOCKED in locked.text and "access_token" not in locked.text
    assert _sign_in(client) == PORTAL_LOCKED  # the OAuth failures locked generateToken as well


def test_concurrent_attempts_cannot_overshoot_the_limit():
    """Attempts still being checked count against the limit, so parallel guesses stop at it."""
    limiter = LoginLimiter(ManualClock(), max_failures=2)
    first, second = limiter.admit("alice"), limiter.admit("Alice ")  # names compare case-insensitively
    with pytest.raises(TooManyLogons):
        limiter.admit("alice")
    limiter.failed(first)
    limiter.failed(second)
    assert limiter.locked("alice")
    open_limiter = LoginLimiter(ManualClock())  # the default (the CLI's) limits nothing
    for _ in range(100):
        open_limiter.failed(open_limiter.admit("alice", "10.0.0.1"))
    assert not open_limiter.locked("alice", "10.0.0.1")


def test_a_store_error_is_not_a_failed_guess(nb):
    def broken(_username):
        raise StoreError()

    nb.users.store.get = broken
    for _ in range(MAX_FAILURES + 1):
        with pytest.raises(StoreError):
            nb.users.authenticate("alice", PASSWORD, address="10.0.0.1")
    assert not nb.users.limiter.locked("alice", "10.0.0.1")


def test_lockout_settings_are_validated():
    from nbjobs.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        load_settings({"NBJOBS_LOGIN_MAX_FAILURES": "-1"})
    with pytest.raises(ConfigurationError):
        load_settings({"NBJOBS_LOGIN_LOCKOUT_SECONDS": "0"})


# -- headers -------------------------------------------------------------------------------------------------


def _assert_secured(response, *, https: bool = True) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp  # default-src 'none' covers scripts: no page of ours runs any
    assert headers["cache-control"] == "no-store"
    if https:
        assert headers["strict-transport-security"].startswith("max-age=")
    else:
        assert "strict-transport-security" not in headers


def test_headers_on_html_json_and_error_answers(client, nb):
    token = _sign_in(client)["token"]
    answers = {
        "html page": client.get(CTX + "/admin/system/jobs", params={"f": "html", "token": token}),
        "json": client.get(CTX + "/sharing/rest", params={"f": "json"}),
        "token": client.post(
            CTX + "/sharing/rest/generateToken", data={"f": "json", "username": "bob", "password": PASSWORD}
        ),
        "499 envelope": client.get(CTX + "/admin/notebooks/jobs", params={"f": "json"}),
        "html error page": client.get(CTX + "/admin/notebooks/jobs", params={"f": "html", "token": "forged"}),
        "unknown path": client.get(CTX + "/no/such/thing", params={"f": "json"}),
        "oversized body": client.post(
            CTX + "/sharing/rest/content/users/alice/addItem",
            content=b"x" * (2 * 1024 * 1024),
            headers={"content-type": "application/octet-stream"},
        ),
        "redirect": client.get("/", follow_redirects=False),
        "oauth sign-in page": client.get(CTX + "/sharing/rest/oauth2/authorize", params={"client_id": "x"}),
    }
    assert "<form" in answers["html page"].text and "token" in answers["token"].json()
    assert answers["499 envelope"].json()["code"] == 499
    assert answers["unknown path"].json()["error"]["code"] == 404
    assert answers["oversized body"].json()["error"]["code"] == 413
    for name, response in answers.items():
        assert response.status_code in (200, 307), name
        _assert_secured(response)
    with TestClient(create_app(nb.web), base_url="http://testserver") as plain:
        _assert_secured(plain.get(CTX + "/sharing/rest", params={"f": "json"}), https=False)


def test_swagger_ui_gets_its_own_policy(client):
    docs = client.get(CTX + "/docs")
    csp = docs.headers["content-security-policy"]
    assert "https://cdn.jsdelivr.net" in csp and "frame-ancestors 'none'" in csp
    assert "cdn.jsdelivr.net" in docs.text  # the page really loads its bundle from there


def test_oauth_page_keeps_reflected_text_inside_its_script(client):
    evil = "</script><script>alert(1)</script><!--"
    page = client.get(CTX + "/sharing/rest/oauth2/authorize", params={"client_id": evil}).text
    assert "<script>alert(1)" not in page
    info = json.loads(re.search(r"var oAuthInfo = (\{.*?\});</script>", page).group(1))  # as ArcGIS parses it
    assert info["client_id"] == evil


# -- the executed notebook as HTML --------------------------------------------------------------------------

PROBE = "nbjobs-probe-7f3a"


def executed_notebook_with_scripts() -> bytes:
    """An executed notebook whose outputs carry script: raw <script> in HTML, and a Javascript display."""
    node = nbformat.v4.new_notebook()
    node.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("from IPython.display import HTML, Javascript, display\n...")
    cell.outputs = [
        nbformat.v4.new_output("display_data", {"text/html": f"<b>bold</b><script>var {PROBE} = 1;</script>",
                                                "text/plain": "<IPython.core.display.HTML object>"}),
        nbformat.v4.new_output("display_data", {"application/javascript": f"window.{PROBE}js = 1;",
                                                "text/plain": "<IPython.core.display.Javascript object>"}),
        nbformat.v4.new_output("stream", name="stdout", text="printed line\n"),
    ]  # fmt: skip
    cell.execution_count = 1
    node.cells = [nbformat.v4.new_markdown_cell("# Report"), cell]
    return nbformat.writes(node).encode()


def _as(caller, fmt: str = "") -> dict:
    return {"token": caller.token, **({"f": fmt} if fmt else {})}


def _ended_job(caller, nb, clock, output: bytes | None) -> str:
    job_id = caller.execute(caller.add_notebook())["jobId"]
    assert nb.store.claim_next("w", clock(), 60_000).job_id == job_id
    if output is not None:
        nb.store.put_blob(job_id, OUTPUT, output, clock())
    nb.store.transition(job_id, JobStatus.COMPLETED, clock())
    return job_id


def test_output_html_is_served_sandboxed(alice, nb, clock):
    job_id = _ended_job(alice, nb, clock, executed_notebook_with_scripts())
    answer = alice.client.get(f"{CTX}/admin/notebooks/jobs/{job_id}/output/html", params=_as(alice))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    csp = [d.strip() for d in answer.headers["content-security-policy"].split(";")]
    assert csp[0] == "sandbox"  # no allow-scripts, no allow-same-origin: an opaque origin, nothing runs
    expected = {"default-src 'none'", "img-src data:", "style-src 'unsafe-inline'", "frame-ancestors 'self'"}
    assert expected <= set(csp)
    assert not any("allow-" in d or "script-src" in d or "connect-src" in d for d in csp)
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "SAMEORIGIN"
    assert answer.headers["cache-control"] == "no-store"
    # nbconvert rendered the outputs as they are; the headers above are what keeps them inert
    assert f"<script>var {PROBE} = 1;</script>" in answer.text
    assert f"window.{PROBE}js = 1;" in answer.text
    assert "printed line" in answer.text and "<b>bold</b>" in answer.text


def test_job_page_embeds_the_output_in_a_sandboxed_frame(alice, nb, clock):
    job_id = _ended_job(alice, nb, clock, executed_notebook_with_scripts())
    page = alice.client.get(f"{CTX}/admin/notebooks/jobs/{job_id}", params=_as(alice, "html"))
    frames = re.findall(r"<iframe[^>]*>", page.text)
    assert frames == [f"<iframe sandbox src='{CTX}/admin/notebooks/jobs/{job_id}/output/html' "
                      "title='Executed notebook'>"]  # fmt: skip
    assert "allow-" not in page.text
    assert "frame-src 'self'" in page.headers["content-security-policy"]
    system = alice.client.get(f"{CTX}/admin/system/jobs/{job_id}", params=_as(alice, "html"))
    assert f"src='{CTX}/admin/notebooks/jobs/{job_id}/output/html'" in system.text
    running = alice.execute(alice.add_notebook())["jobId"]
    unended = alice.client.get(f"{CTX}/admin/notebooks/jobs/{running}", params=_as(alice, "html"))
    assert "<iframe" not in unended.text


def test_output_html_has_the_same_owner_checks_as_the_output(alice, bob, admin, nb, clock):
    job_id = _ended_job(alice, nb, clock, executed_notebook_with_scripts())
    path = "/admin/notebooks/jobs/{}/output/html"
    theirs = bob.get(path.format(job_id)).json()
    unknown = bob.get(path.format("j" + "0" * 32)).json()
    assert theirs["code"] == unknown["code"] == 404
    assert theirs["messages"][0].replace(job_id, "?") == unknown["messages"][0].replace("j" + "0" * 32, "?")
    anonymous = alice.client.get(CTX + path.format(job_id), params={"f": "json"}).json()
    assert anonymous["code"] == 499
    assert PROBE in admin.client.get(CTX + path.format(job_id), params={"token": admin.token}).text
    no_output = _ended_job(alice, nb, clock, None)
    assert alice.get(path.format(no_output)).json()["code"] == 404


def test_unreadable_output_is_an_error_envelope(alice, nb, clock):
    job_id = _ended_job(alice, nb, clock, b"\xff not a notebook")
    answer = alice.get(f"/admin/notebooks/jobs/{job_id}/output/html")
    assert answer.status_code == 200
    assert answer.json() == {"status": "error", "code": 400,
                             "messages": ["The job's output is not a readable notebook."]}  # fmt: skip


def test_duplicate_and_missing_cell_ids_still_render(alice, nb, clock):
    raw = json.loads(executed_notebook_with_scripts())
    raw["cells"].append(dict(raw["cells"][1]))  # the same id twice (nbformat would warn: an error here)
    raw["cells"].append({k: v for k, v in raw["cells"][0].items() if k != "id"})
    job_id = _ended_job(alice, nb, clock, json.dumps(raw).encode())
    answer = alice.client.get(f"{CTX}/admin/notebooks/jobs/{job_id}/output/html", params=_as(alice))
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.text.count("printed line") == 2
