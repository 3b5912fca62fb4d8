"""The app at /arcgis/app in-process: sign in and out, the cookie and CSRF rules, the jobs, job and notebooks
pages, the run form's typed inputs (refused on the server too) and an upload that is not a notebook."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from nbjobs.models.jobs import OUTPUT, Failure, FailureReason, JobStatus, JobUpdate
from nbjobs.roots.server import Server
from nbjobs.web.app import create_app
from nbjobs.web.ui.session import APP_COOKIE, csrf_of
from tests.conftest import notebook_bytes
from tests.web.conftest import CTX, PASSWORD

APP = CTX + "/app"
ORIGIN = {"origin": "https://testserver"}
NB_TYPE = "application/x-ipynb+json"


def _form_value(html: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert found, f"no {name} field in the page"
    return found.group(1)


def sign_in(client: TestClient, username: str) -> str:
    """Sign in through the form; the page's CSRF token."""
    page = client.get(APP + "/signin")
    assert page.status_code == 200
    answer = client.post(
        APP + "/signin",
        data={"csrf": _form_value(page.text, "csrf"), "username": username, "password": PASSWORD,
              "next": APP + "/notebooks"},
        headers=ORIGIN, follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == APP + "/notebooks"
    return _form_value(client.get(APP + "/jobs").text, "csrf")


@pytest.fixture
def app_client(nb: Server) -> Iterator[TestClient]:
    with TestClient(create_app(nb.web), base_url="https://testserver") as c:
        yield c


@pytest.fixture
def other_client(nb: Server) -> Iterator[TestClient]:
    with TestClient(create_app(nb.web), base_url="https://testserver") as c:
        yield c


def upload(client: TestClient, csrf: str, name: str = "parameters.ipynb", data: bytes | None = None):
    files = {"file": (name, notebook_bytes(name) if data is None else data, NB_TYPE)}
    return client.post(APP + "/notebooks/upload", data={"csrf": csrf}, files=files, headers=ORIGIN,
                       follow_redirects=False)  # fmt: skip


# -- signing in -------------------------------------------------------------------------------------


def test_root_and_app_redirect_to_the_jobs_page_then_to_sign_in(app_client: TestClient) -> None:
    assert app_client.get("/", follow_redirects=False).headers["location"] == APP + "/"
    assert app_client.get(APP + "/", follow_redirects=False).headers["location"] == APP + "/jobs"
    jobs = app_client.get(APP + "/jobs?status=FAILED", follow_redirects=False)
    assert jobs.status_code == 303
    assert jobs.headers["location"] == APP + "/signin?next=%2Farcgis%2Fapp%2Fjobs%3Fstatus%3DFAILED"


def test_sign_in_sets_httponly_secure_lax_session_and_strict_api_cookie(app_client: TestClient) -> None:
    page = app_client.get(APP + "/signin")
    answer = app_client.post(
        APP + "/signin",
        data={"csrf": _form_value(page.text, "csrf"), "username": "alice", "password": PASSWORD},
        headers=ORIGIN, follow_redirects=False,
    )  # fmt: skip
    assert answer.headers["location"] == APP + "/jobs"
    cookies = answer.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(APP_COOKIE + "="))
    api = next(c for c in cookies if c.startswith("nbjobs_token="))
    for flag in ("HttpOnly", "Secure", "SameSite=lax", f"Path={APP}"):
        assert flag.lower() in session.lower(), session
    for flag in ("HttpOnly", "Secure", "SameSite=strict", f"Path={CTX}/admin"):
        assert flag.lower() in api.lower(), api
    jobs = app_client.get(APP + "/jobs")
    assert "alice" in jobs.text and "Sign out" in jobs.text
    assert "script-src 'self'" in jobs.headers["content-security-policy"]
    assert jobs.headers["referrer-policy"] == "same-origin"


def test_wrong_password_shows_the_message_in_the_page(app_client: TestClient) -> None:
    page = app_client.get(APP + "/signin")
    answer = app_client.post(
        APP + "/signin", data={"csrf": _form_value(page.text, "csrf"), "username": "alice", "password": "no"},
        headers=ORIGIN,
    )  # fmt: skip
    assert answer.status_code == 400
    assert "Invalid username or password" in answer.text
    assert APP_COOKIE not in app_client.cookies


def test_sign_in_without_its_csrf_value_or_from_another_origin_is_refused(app_client: TestClient) -> None:
    page = app_client.get(APP + "/signin")
    good = {"csrf": _form_value(page.text, "csrf"), "username": "alice", "password": PASSWORD}
    for data, headers in (
        ({**good, "csrf": "forged"}, ORIGIN),
        (good, {"origin": "https://evil.example"}),
        (good, {}),
    ):
        answer = app_client.post(APP + "/signin", data=data, headers=headers, follow_redirects=False)
        assert answer.status_code == 403
        assert "did not come from a page of this server" in answer.text
    assert APP_COOKIE not in app_client.cookies


def test_sign_out_revokes_the_token(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    token = app_client.cookies.get(APP_COOKIE, path=APP)
    assert nb.tokens.authenticate(token).username == "alice"
    answer = app_client.post(APP + "/signout", data={"csrf": csrf}, headers=ORIGIN, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == APP + "/signin"
    with pytest.raises(Exception, match="Invalid token"):
        nb.tokens.authenticate(token)


def test_expired_session_goes_back_to_sign_in(app_client: TestClient, nb: Server, clock) -> None:
    sign_in(app_client, "alice")
    clock.advance(nb.tokens.default_minutes * 60_000 + 1)
    answer = app_client.get(APP + "/jobs", follow_redirects=False)
    assert answer.status_code == 303 and "expired=1" in answer.headers["location"]


# -- CSRF on the session's POSTs ------------------------------------------------------------------------


def test_a_post_with_the_cookie_but_without_csrf_or_from_another_origin_is_refused(
    app_client: TestClient, nb: Server
) -> None:
    csrf = sign_in(app_client, "alice")
    item = upload(app_client, csrf).headers["location"].rsplit("/", 1)[-1]
    before = nb.store.count()
    run = APP + f"/notebooks/{item}/run"
    for data, headers in (
        ({}, ORIGIN),  # no token
        ({"csrf": "0" * 64}, ORIGIN),  # a wrong one
        ({"csrf": csrf}, {"origin": "https://evil.example"}),  # right token, another site
        ({"csrf": csrf}, {"origin": "null"}),
        ({"csrf": csrf}, {}),  # no Origin, no Referer
    ):
        answer = app_client.post(run, data={"p.count": "1", **data}, headers=headers)
        assert answer.status_code == 403, answer.text
        assert "Refused" in answer.text
    as_json = app_client.post(
        run + "?f=json", data={"p.count": "1"}, headers={"origin": "https://evil.example"}
    )
    assert as_json.json()["error"]["code"] == 403
    assert nb.store.count() == before
    referer = app_client.post(run, data={"csrf": csrf, "p.count": "1"},
                              headers={"referer": f"https://testserver{APP}/notebooks/{item}"},
                              follow_redirects=False)  # fmt: skip
    assert referer.status_code == 303  # a same-origin Referer stands in for a missing Origin
    assert nb.store.count() == before + 1


def test_csrf_token_is_an_hmac_of_the_session(app_client: TestClient) -> None:
    csrf = sign_in(app_client, "alice")
    assert csrf == csrf_of(app_client.cookies.get(APP_COOKIE, path=APP))
    assert len(csrf) == 64


def test_a_bearer_token_needs_no_csrf(app_client: TestClient, nb: Server) -> None:
    token = nb.tokens.issue(nb.users.get("alice")).token
    answer = app_client.post(APP + "/notebooks/upload?f=json", headers={"authorization": f"Bearer {token}"},
                             files={"file": ("x.ipynb", notebook_bytes("trivial.ipynb"), NB_TYPE)},
                             follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303


# -- notebooks and the run form ---------------------------------------------------------------------


def test_upload_then_the_run_form_has_typed_inputs_with_the_cells_defaults(app_client: TestClient) -> None:
    csrf = sign_in(app_client, "alice")
    answer = upload(app_client, csrf)
    assert answer.status_code == 303
    page = app_client.get(answer.headers["location"]).text
    assert 'name="p.name" value="nobody" data-kind="text"' in page
    assert re.search(r'name="p.count" value="0"[^>]*data-kind="number"', page)
    assert re.search(r'name="p.ratio" value="0.0"[^>]*data-kind="number"', page)
    assert 'type="checkbox" name="p.flag" value="true">' in page  # False: unchecked
    assert re.search(r'name="p.items"[^>]*data-kind="json"[^>]*>\[\]</textarea>', page)
    assert re.search(r'name="p.config"[^>]*data-kind="json"[^>]*>\{\}</textarea>', page)
    assert "parameters.ipynb" in app_client.get(APP + "/notebooks").text


def test_running_from_the_form_submits_only_the_changed_values(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    item = upload(app_client, csrf).headers["location"].rsplit("/", 1)[-1]
    form = {"csrf": csrf, "p.name": "Ada", "p.count": "3", "p.ratio": "0.0", "p.flag": "true",
            "p.items": "[1, 2]", "p.config": "{}", "p.when": "null"}  # fmt: skip
    answer = app_client.post(
        APP + f"/notebooks/{item}/run", data=form, headers=ORIGIN, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    job_id = answer.headers["location"].rsplit("/", 1)[-1]
    job = nb.store.get(job_id)
    assert dict(job.inputs.notebook_parameters) == {"name": "Ada", "count": 3, "flag": True, "items": [1, 2]}
    assert job.inputs.update_portal_item is False
    page = html.unescape(app_client.get(answer.headers["location"]).text)
    assert "SUBMITTED" in page and '"name": "Ada"' in page
    again = app_client.get(APP + f"/notebooks/{item}?job={job_id}").text
    assert 'name="p.name" value="Ada"' in again and re.search(r'name="p.count" value="3"', again)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("p.count", "three", "must be a number"),
        ("p.count", "2.5.1", "must be a number"),
        ("p.ratio", "1e999", "must be a finite number"),
        ("p.items", "[1, 2", "must be JSON"),
        ("p.flag", "maybe", "must be true or false"),
    ],
)
def test_a_value_that_does_not_parse_as_its_type_is_refused_by_the_server(
    app_client: TestClient, nb: Server, field: str, value: str, message: str
) -> None:
    csrf = sign_in(app_client, "alice")
    item = upload(app_client, csrf).headers["location"].rsplit("/", 1)[-1]
    before = nb.store.count()
    answer = app_client.post(
        APP + f"/notebooks/{item}/run", data={"csrf": csrf, field: value}, headers=ORIGIN
    )
    assert answer.status_code == 400
    assert message in answer.text and "nothing was run" in answer.text
    assert nb.store.count() == before


def test_an_upload_that_is_not_a_notebook_gets_a_clear_message(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    for name, data in (("notes.txt", b"just some text"), ("empty.ipynb", b""), ("x.ipynb", b'{"cells": 3}')):
        answer = upload(app_client, csrf, name, data)
        assert answer.status_code == 400
        assert 'role="alert"' in answer.text and "was not uploaded" in answer.text
        assert "not a notebook" in answer.text or "empty" in answer.text
    assert nb.items.list(nb.users.get("alice").principal(), "alice") == []


def test_a_new_version_replaces_the_notebook(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    item = upload(app_client, csrf).headers["location"].rsplit("/", 1)[-1]
    files = {"file": ("sleeps.ipynb", notebook_bytes("sleeps.ipynb"), NB_TYPE)}
    answer = app_client.post(APP + f"/notebooks/{item}/update", data={"csrf": csrf}, files=files,
                             headers=ORIGIN, follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303
    assert nb.items.store.get_data(item) == notebook_bytes("sleeps.ipynb")
    assert "no cell tagged" in app_client.get(APP + f"/notebooks/{item}").text


# -- jobs ------------------------------------------------------------------------------------------


def _job(nb: Server, owner: str, golden: str = "parameters.ipynb") -> str:
    from nbjobs.models.accounts import Principal
    from nbjobs.service.content.items import ItemFields

    user = nb.users.get(owner)
    item = nb.items.add(Principal(owner), owner, notebook_bytes(golden), type="Notebook",
                        fields=ItemFields(title=golden, filename=golden)).item_id  # fmt: skip
    return nb.notebooks.execute(user, item, update_portal_item=False).job_id


def test_jobs_page_lists_only_the_callers_jobs_and_filters(app_client: TestClient, nb: Server) -> None:
    mine, theirs = _job(nb, "alice"), _job(nb, "bob")
    done = _job(nb, "alice")
    now = nb.clock()
    nb.store.transition(done, JobStatus.EXECUTING, now, update=JobUpdate(start_time=now))
    nb.store.transition(done, JobStatus.COMPLETED, now)
    sign_in(app_client, "alice")
    page = app_client.get(APP + "/jobs").text
    assert mine in page and done in page and theirs not in page
    completed = app_client.get(APP + "/jobs?status=COMPLETED").text
    assert done in completed and mine not in completed
    assert mine not in app_client.get(APP + "/jobs?type=openNotebook").text
    assert mine not in app_client.get(APP + "/jobs?runtime=nosuch").text
    assert mine not in app_client.get(APP + "/jobs?from=2999-01-01").text
    assert mine in app_client.get(APP + "/jobs?to=2999-01-01&sort=oldest").text
    bad = app_client.get(APP + "/jobs?status=BOGUS")
    assert bad.status_code == 400 and "must be one of" in bad.text
    assert app_client.get(APP + "/jobs?from=yesterday").status_code == 400
    # another user's job answers like an unknown one
    hidden = app_client.get(APP + f"/jobs/{theirs}")
    assert hidden.status_code == 404 and "does not exist or is inaccessible" in hidden.text


def test_admin_sees_everyone_and_filters_by_user(app_client: TestClient, nb: Server) -> None:
    a, b = _job(nb, "alice"), _job(nb, "bob")
    sign_in(app_client, "admin")
    page = app_client.get(APP + "/jobs").text
    assert a in page and b in page and 'id="f-user"' in page
    only_bob = app_client.get(APP + "/jobs?user=bob").text
    assert b in only_bob and a not in only_bob


def test_jobs_page_paginates(app_client: TestClient, nb: Server) -> None:
    ids = [_job(nb, "alice", "trivial.ipynb") for _ in range(27)]
    sign_in(app_client, "alice")
    first = app_client.get(APP + "/jobs").text
    assert "page 1 of 2" in first and 'rel="next"' in first
    second = app_client.get(APP + "/jobs?page=2").text
    shown = [i for i in ids if i in first] + [i for i in ids if i in second]
    assert sorted(shown) == sorted(ids)


def test_job_page_shows_failure_cell_and_traceback_and_the_frame(app_client: TestClient, nb: Server) -> None:
    job_id = _job(nb, "alice")
    now = nb.clock()
    red, plain = "\x1b[0;31m", "\x1b[0m"
    failure = Failure(
        FailureReason.CELL_ERROR, "A cell raised", cell_index=2, ename="ValueError",
        evalue=f"bad {red}value{plain}", traceback=(f"{red}Traceback{plain} line 1",),
    )  # fmt: skip
    nb.store.transition(job_id, JobStatus.EXECUTING, now, update=JobUpdate(start_time=now))
    nb.store.put_blob(job_id, OUTPUT, notebook_bytes("trivial.ipynb"), now)
    nb.store.transition(
        job_id, JobStatus.FAILED, now + 1500,
        update=JobUpdate(failure=failure, results={"hasOutputNotebook": True}),
    )  # fmt: skip
    sign_in(app_client, "alice")
    page = app_client.get(APP + f"/jobs/{job_id}").text
    assert "FAILED" in page and "A cell raised" in page and "ValueError" in page
    assert "data-no-output hidden" in page
    assert "Traceback line 1" in page and "\x1b" not in page
    frame = f'data-src="{CTX}/admin/notebooks/jobs/{job_id}/output/html" src='
    assert '<iframe sandbox title="Executed notebook"' in page and frame in page
    assert "data-cancel hidden" in page
    html = app_client.get(APP + f"/jobs/{job_id}/notebook.html")
    assert html.status_code == 200 and "attachment" in html.headers["content-disposition"]
    assert "sandbox" in html.headers["content-security-policy"]


def test_a_job_that_ended_without_an_executed_notebook_shows_no_frame(
    app_client: TestClient, nb: Server
) -> None:
    job_id = _job(nb, "alice")
    nb.store.transition(job_id, JobStatus.CANCELLED, nb.clock())  # cancelled while SUBMITTED: no output
    sign_in(app_client, "alice")
    page = app_client.get(APP + f"/jobs/{job_id}").text
    assert "This job produced no executed notebook" in page and "data-no-output hidden" not in page
    assert " src=" not in page.split("data-frame", 1)[1].split(">", 1)[0]  # the frame loads nothing


def test_cancel_and_run_again_from_the_job_page(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    item = upload(app_client, csrf).headers["location"].rsplit("/", 1)[-1]
    ran = app_client.post(APP + f"/notebooks/{item}/run", data={"csrf": csrf, "p.count": "7", "p.ratio": "0",
                          "p.name": "nobody"}, headers=ORIGIN, follow_redirects=False)  # fmt: skip
    job_id = ran.headers["location"].rsplit("/", 1)[-1]
    cancel = app_client.post(APP + f"/jobs/{job_id}/cancel?f=json", headers={**ORIGIN, "x-csrf-token": csrf})
    assert cancel.json() == {"status": "success", "jobStatus": "CANCELLED"}
    again = app_client.post(APP + f"/jobs/{job_id}/rerun", data={"csrf": csrf}, headers=ORIGIN,
                            follow_redirects=False)  # fmt: skip
    new_id = again.headers["location"].rsplit("/", 1)[-1]
    assert new_id != job_id
    assert dict(nb.store.get(new_id).inputs.notebook_parameters) == {"count": 7}


def test_static_files_are_served(app_client: TestClient) -> None:
    css = app_client.get(APP + "/static/app.css")
    js = app_client.get(APP + "/static/app.js")
    assert css.headers["content-type"].startswith("text/css") and "--accent" in css.text
    assert js.headers["content-type"].startswith("text/javascript") and "EventSource" in js.text


# -- bad input never breaks a page --------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["page=abc", "page=-1", "page=99999999999", "from=2026-13-40", "to=<script>", "sort=sideways",
     "type=%00", "runtime=%F0%9F%92%A5", "status=<b>x</b>"],
)  # fmt: skip
def test_bad_filters_answer_a_page_never_a_500(app_client: TestClient, query: str) -> None:
    sign_in(app_client, "alice")
    answer = app_client.get(APP + "/jobs?" + query)
    assert answer.status_code in (200, 400), answer.text
    assert "<script>" not in answer.text and "<b>x</b>" not in answer.text


@pytest.mark.parametrize(
    "path", ["/jobs/not-a-job-id", "/jobs/%2e%2e", "/notebooks/nosuchitem", "/notebooks/x?job=nosuch"]
)
def test_unknown_ids_answer_a_not_found_page(app_client: TestClient, path: str) -> None:
    sign_in(app_client, "alice")
    answer = app_client.get(APP + path)
    assert answer.status_code in (400, 404) and 'role="alert"' in answer.text


def test_text_from_users_is_escaped(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    files = {"file": ("<img src=x onerror=alert(1)>.ipynb", notebook_bytes("parameters.ipynb"), NB_TYPE)}
    data = {"csrf": csrf, "title": "<script>alert(1)</script>"}
    answer = app_client.post(APP + "/notebooks/upload", data=data, files=files, headers=ORIGIN,
                             follow_redirects=False)  # fmt: skip
    item_page = app_client.get(answer.headers["location"]).text
    listing = app_client.get(APP + "/notebooks").text
    for page in (item_page, listing):
        assert "<script>alert(1)" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
