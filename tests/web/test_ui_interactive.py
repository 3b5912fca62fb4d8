"""The app's side of interactive notebooks, in-process (no Jupyter runs here: an openNotebook job stays
SUBMITTED until a test ends it, and a "running" container is written to the store): Open in JupyterLab
on the item page, the "Opening…" page, the hand-over to JupyterLab (the lab cookie, then a 303), the
Running notebooks page with Close and Terminate server, refusals shown on the item page, CSRF, and
another user's job or notebook answering like an unknown one."""

from __future__ import annotations

import html
import json
import re
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from nbjobs.errors import ContainerLimitReached
from nbjobs.models.interactive import (
    Container,
    ContainerStatus,
    OpenNotebook,
    new_container_id,
    new_notebook_id,
)
from nbjobs.models.jobs import Failure, FailureReason, JobStatus, JobType, JobUpdate, new_job_id
from nbjobs.roots.server import Server
from nbjobs.service.authz import OPERATOR
from nbjobs.service.content.items import NOTEBOOK_TYPE, ItemFields
from nbjobs.service.runtimes.fields import RuntimeFields
from nbjobs.web.app import create_app
from nbjobs.web.routes.lab_proxy import LAB_COOKIE
from nbjobs.web.ui.session import APP_COOKIE
from tests.conftest import notebook_bytes
from tests.web.conftest import CTX, PASSWORD
from tests.web.test_ui_app import APP, ORIGIN, sign_in, upload

CLOSED_PORT = "http://127.0.0.1:9"  # nothing answers: saving on close finds the server gone, and says so


@pytest.fixture
def app_client(nb: Server) -> Iterator[TestClient]:
    with TestClient(create_app(nb.web), base_url="https://testserver") as c:
        yield c


@pytest.fixture
def bob_client(nb: Server) -> Iterator[TestClient]:
    with TestClient(create_app(nb.web), base_url="https://testserver") as c:
        yield c


def _item(client: TestClient, csrf: str, name: str = "trivial.ipynb", data: bytes | None = None) -> str:
    answer = upload(client, csrf, name, data)
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].rsplit("/", 1)[-1]


def _open(client: TestClient, csrf: str, item: str) -> str:
    """Open in JupyterLab from the item page's form; the openNotebook job's id."""
    answer = client.post(APP + f"/notebooks/{item}/open", data={"csrf": csrf}, headers=ORIGIN,
                         follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith(APP + "/open/")
    return answer.headers["location"].rsplit("/", 1)[-1]


def _add(nb: Server, owner: str) -> str:
    who = nb.users.get(owner).principal()
    data = notebook_bytes("trivial.ipynb")
    return nb.items.add(who, owner, data, type=NOTEBOOK_TYPE, fields=ItemFields(title="Trivial")).item_id


def _lab(nb: Server, username: str, item: str) -> tuple[str, str]:
    """A RUNNING container of ``username`` with ``item`` open in it, straight to the store; (cid, nid)."""
    now = nb.clock()
    runtime = nb.runtimes.default().runtime_id
    containers = nb.interactive.containers
    live = containers.live_for(username, runtime)
    container_id = live.container_id if live is not None else new_container_id()
    if live is None:
        assert containers.add(Container(
            container_id=container_id, username=username, runtime_id=runtime, node="local",
            status=ContainerStatus.RUNNING, created=now, last_activity=now, address=CLOSED_PORT, token="t",
        ))  # fmt: skip
    notebook_id = new_notebook_id()
    containers.add_notebook(OpenNotebook(
        notebook_id=notebook_id, container_id=container_id, item_id=item, username=username,
        path=f"{item}.ipynb", opened=now, last_activity=now,
    ))  # fmt: skip
    return container_id, notebook_id


def _complete(nb: Server, job_id: str, container_id: str, notebook_id: str, item: str) -> None:
    """What the container host does once JupyterLab answers: the job COMPLETED with ArcGIS' results."""
    now = nb.clock()
    nb.store.transition(job_id, JobStatus.EXECUTING, now, update=JobUpdate(start_time=now))
    results = {"notebookUrl": f"/notebooks/{container_id}/notebooks/{item}.ipynb", "notebookId": notebook_id,
               "containerId": container_id, "itemId": item}  # fmt: skip
    nb.store.transition(job_id, JobStatus.COMPLETED, now + 1, update=JobUpdate(
        results=results, progress_percent=100, progress_message="Notebook is open"))  # fmt: skip


# -- Open -------------------------------------------------------------------------------------------


def test_open_submits_an_open_notebook_job_and_shows_its_progress(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    page = app_client.get(APP + f"/notebooks/{item}").text
    assert f'action="{APP}/notebooks/{item}/open"' in page and "Open in JupyterLab" in page
    assert "Versions" in page and "Run notebook" in page  # the page's other sections stay

    job_id = _open(app_client, csrf, item)
    job = nb.store.get(job_id)
    assert job.type == JobType.OPEN_NOTEBOOK and job.username == "alice"
    assert job.inputs.item_id == item and job.status == JobStatus.SUBMITTED
    nb.store.transition(job_id, JobStatus.EXECUTING, nb.clock())
    assert nb.store.set_progress(
        job_id, job.attempt, nb.clock(), 20, "Waiting for the notebook server to start"
    )
    opening = app_client.get(APP + f"/open/{job_id}")
    assert opening.status_code == 200
    text = html.unescape(opening.text)
    assert "Opening <span>trivial</span> in JupyterLab" in text  # the item's title
    assert 'value="20"' in text and "Waiting for the notebook server to start" in text
    assert f'data-events="{CTX}/admin/notebooks/jobs/{job_id}/events"' in text  # the live progress
    assert f'data-enter="{APP}/open/{job_id}/lab"' in text
    assert '<meta http-equiv="refresh" content="2">' in text  # without script: the page reloads
    assert "data-enter-ready hidden" in text and "data-failure hidden" in text
    # not open yet: the hand-over sends the browser back to the opening page
    early = app_client.get(APP + f"/open/{job_id}/lab", follow_redirects=False)
    assert early.status_code == 303 and early.headers["location"] == APP + f"/open/{job_id}"
    assert LAB_COOKIE not in early.headers.get("set-cookie", "")


def test_a_completed_open_hands_the_browser_to_jupyterlab_with_the_lab_cookie(
    app_client: TestClient, nb: Server
) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    job_id = _open(app_client, csrf, item)
    container_id, notebook_id = _lab(nb, "alice", item)
    _complete(nb, job_id, container_id, notebook_id, item)
    enter = f"{APP}/open/{job_id}/lab"
    opening = app_client.get(APP + f"/open/{job_id}").text
    assert f'<meta http-equiv="refresh" content="0; url={enter}">' in opening
    assert f'href="{enter}" data-enter-link' in opening and 'data-state="COMPLETED"' in opening

    answer = app_client.get(enter, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{CTX}/notebooks/{container_id}/lab/tree/{item}.ipynb"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(LAB_COOKIE + "="))
    assert cookie.startswith(f"{LAB_COOKIE}={app_client.cookies.get(APP_COOKIE, path=APP)};")
    for flag in ("HttpOnly", "Secure", "SameSite=lax", f"Path={CTX}/notebooks/"):
        assert flag.lower() in cookie.lower(), cookie
    # the running page's Open goes the same way
    again = app_client.get(f"{APP}/running/{notebook_id}/lab", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == answer.headers["location"]
    assert LAB_COOKIE in again.headers["set-cookie"]
    # once it is closed, the job's hand-over says so instead of sending the browser to a stopped server
    nb.interactive.containers.close_notebook(notebook_id, nb.clock(), "closed")
    closed = app_client.get(enter, follow_redirects=False)
    assert closed.status_code == 404 and LAB_COOKIE not in closed.headers.get("set-cookie", "")


def test_a_failed_open_shows_why_and_does_not_enter(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    job_id = _open(app_client, csrf, item)
    failure = Failure(FailureReason.NOTEBOOK_SERVER_FAILED, "The notebook server did not start within 120 s.")
    nb.store.transition(job_id, JobStatus.FAILED, nb.clock(), update=JobUpdate(failure=failure))
    page = app_client.get(APP + f"/open/{job_id}")
    assert page.status_code == 200
    assert "The notebook was not opened" in page.text and "did not start within 120 s." in page.text
    assert "data-failure hidden" not in page.text and "http-equiv" not in page.text
    enter = app_client.get(APP + f"/open/{job_id}/lab", follow_redirects=False)
    assert enter.headers["location"] == APP + f"/open/{job_id}"


def test_another_job_goes_to_its_job_page(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    run = app_client.post(APP + f"/notebooks/{item}/run", data={"csrf": csrf}, headers=ORIGIN,
                          follow_redirects=False)  # fmt: skip
    job_id = run.headers["location"].rsplit("/", 1)[-1]
    for path in (f"/open/{job_id}", f"/open/{job_id}/lab"):
        answer = app_client.get(APP + path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == APP + f"/jobs/{job_id}"


def test_refusals_are_said_on_the_item_page(app_client: TestClient, nb: Server, monkeypatch) -> None:
    csrf = sign_in(app_client, "alice")
    spec = nb.runtimes.register(OPERATOR, RuntimeFields(name="Retired", python=sys.executable))
    nb.runtimes.update(OPERATOR, spec.runtime_id, RuntimeFields(disabled=True))
    notebook = json.loads(notebook_bytes("trivial.ipynb"))
    notebook["metadata"]["esriNotebookRuntime"] = {"notebookRuntimeName": "Retired"}
    item = _item(app_client, csrf, "retired.ipynb", json.dumps(notebook).encode())
    before = nb.store.count()
    disabled = app_client.post(APP + f"/notebooks/{item}/open", data={"csrf": csrf}, headers=ORIGIN)
    assert disabled.status_code == 400
    assert 'role="alert"' in disabled.text and "The notebook was not opened" in disabled.text
    assert "Retired" in html.unescape(disabled.text) and "is disabled" in disabled.text
    assert "Open in JupyterLab" in disabled.text  # the item page, with its forms

    def full(*args: object, **kwargs: object) -> None:
        raise ContainerLimitReached("The notebook server runs 20 notebook containers already.")

    monkeypatch.setattr(nb.interactive, "open", full)
    limited = app_client.post(APP + f"/notebooks/{item}/open", data={"csrf": csrf}, headers=ORIGIN)
    assert limited.status_code == 429 and "runs 20 notebook containers already" in limited.text
    as_json = app_client.post(APP + f"/notebooks/{item}/open?f=json", data={"csrf": csrf}, headers=ORIGIN)
    assert as_json.json()["error"]["code"] == 429
    assert nb.store.count() == before


def test_open_without_csrf_or_from_another_origin_is_refused(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    container_id, notebook_id = _lab(nb, "alice", item)
    before = nb.store.count()
    for path in (f"/notebooks/{item}/open", f"/running/{notebook_id}/close",
                 f"/running/servers/{container_id}/terminate"):  # fmt: skip
        for data, headers in (({}, ORIGIN), ({"csrf": "0" * 64}, ORIGIN), ({"csrf": csrf}, {})):
            answer = app_client.post(APP + path, data=data, headers=headers, follow_redirects=False)
            assert answer.status_code == 403 and "Refused" in answer.text, (path, answer.text)
    assert nb.store.count() == before
    assert nb.interactive.containers.get_notebook(notebook_id).is_open
    assert nb.interactive.containers.get(container_id).status == ContainerStatus.RUNNING


# -- Running notebooks ------------------------------------------------------------------------------


def test_running_notebooks_lists_the_users_own_and_closes_one(app_client: TestClient, nb: Server) -> None:
    csrf = sign_in(app_client, "alice")
    first, second = _item(app_client, csrf, "trivial.ipynb"), _item(app_client, csrf, "parameters.ipynb")
    container_id, one = _lab(nb, "alice", first)
    _, two = _lab(nb, "alice", second)
    bob_item = _add(nb, "bob")
    _, bobs = _lab(nb, "bob", bob_item)
    nav = app_client.get(APP + "/jobs").text
    assert f'href="{APP}/running"' in nav and "Running notebooks" in nav
    page = app_client.get(APP + "/running")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "2 open notebooks" in text and ">trivial<" in text and ">parameters<" in text
    assert f'href="{APP}/running/{one}/lab"' in text and f'action="{APP}/running/{one}/close"' in text
    assert bobs not in text and bob_item not in text and '<th scope="col">User</th>' not in text
    assert container_id in text and "Terminate server" in text and "Administration" not in text

    closed = app_client.post(APP + f"/running/{one}/close", data={"csrf": csrf}, headers=ORIGIN,
                             follow_redirects=False)  # fmt: skip
    assert closed.status_code == 303 and closed.headers["location"] == APP + "/running"
    assert not nb.interactive.containers.get_notebook(one).is_open
    assert nb.interactive.containers.get(container_id).status == ContainerStatus.RUNNING  # two is open
    after = app_client.get(APP + "/running").text
    assert "1 open notebook." in after and one not in after and two in after
    again = app_client.post(APP + f"/running/{one}/close", data={"csrf": csrf}, headers=ORIGIN)
    assert again.status_code == 404  # closed already: as an unknown notebook

    app_client.post(APP + f"/running/{two}/close", data={"csrf": csrf}, headers=ORIGIN)
    assert nb.interactive.containers.get(container_id).status == ContainerStatus.STOPPING  # the last one
    assert "No notebook is open" in app_client.get(APP + "/running").text


def test_an_administrator_sees_everyones_and_terminates_a_server_but_does_not_enter(
    app_client: TestClient, nb: Server
) -> None:
    item = _add(nb, "alice")
    container_id, notebook_id = _lab(nb, "alice", item)
    job_id = nb.interactive.open(nb.users.get("alice"), item).job_id
    _complete(nb, job_id, container_id, notebook_id, item)
    csrf = sign_in(app_client, "admin")
    text = html.unescape(app_client.get(APP + "/running").text)
    assert "1 open notebook." in text and "<td>alice</td>" in text
    assert f'action="{APP}/running/{notebook_id}/close"' in text
    assert f"{APP}/running/{notebook_id}/lab" not in text  # no Open: only alice enters her server
    assert f'action="{APP}/running/servers/{container_id}/terminate"' in text
    assert 'aria-label="Administration"' in text  # the admin section's navigation
    assert "Running notebooks</a>" in app_client.get(APP + "/admin/users").text
    item_page = app_client.get(APP + f"/notebooks/{item}").text
    assert "Open in JupyterLab" not in item_page  # alice's notebook opens in alice's server only

    for path in (f"/running/{notebook_id}/lab", f"/open/{job_id}/lab"):
        refused = app_client.get(APP + path, follow_redirects=False)
        assert refused.status_code == 404, path
        assert LAB_COOKIE not in refused.headers.get("set-cookie", "")
    assert app_client.get(APP + f"/open/{job_id}", follow_redirects=False).headers["location"] == (
        APP + f"/jobs/{job_id}"
    )  # the job page is an administrator's to read

    answer = app_client.post(APP + f"/running/servers/{container_id}/terminate", data={"csrf": csrf},
                             headers=ORIGIN, follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == APP + "/running"
    assert nb.interactive.containers.get(container_id).status == ContainerStatus.STOPPING
    assert not nb.interactive.containers.get_notebook(notebook_id).is_open


def test_another_users_job_and_notebook_answer_like_unknown_ones(
    app_client: TestClient, bob_client: TestClient, nb: Server
) -> None:
    csrf = sign_in(app_client, "alice")
    item = _item(app_client, csrf)
    job_id = _open(app_client, csrf, item)
    container_id, notebook_id = _lab(nb, "alice", item)
    _complete(nb, job_id, container_id, notebook_id, item)
    bob_csrf = sign_in(bob_client, "bob")
    pairs = [  # (method, path, alice's id in it, an unknown id of the same kind)
        ("GET", "/open/{}", job_id, new_job_id()),
        ("GET", "/open/{}/lab", job_id, new_job_id()),
        ("GET", "/running/{}/lab", notebook_id, new_notebook_id()),
        ("POST", "/running/{}/close", notebook_id, new_notebook_id()),
        ("POST", "/running/servers/{}/terminate", container_id, new_container_id()),
        ("POST", "/notebooks/{}/open", item, "0123456789abcdef0123456789abcdef"),
    ]
    for method, path, theirs, unknown in pairs:
        for fmt in ("", "?f=json"):
            data = {"csrf": bob_csrf} if method == "POST" else None
            a, b = (
                bob_client.request(method, APP + path.format(ref) + fmt, headers=ORIGIN, data=data,
                                   follow_redirects=False)
                for ref in (theirs, unknown)
            )  # fmt: skip
            assert a.status_code == b.status_code, (path, a.status_code, b.status_code)
            assert a.status_code >= 400 if not fmt else a.json()["error"]["code"] >= 400, (path, a.text)
            assert a.text.replace(theirs, "X") == b.text.replace(unknown, "X"), (path, a.text, b.text)
            assert LAB_COOKIE not in a.headers.get("set-cookie", "")
    assert nb.interactive.containers.get_notebook(notebook_id).is_open
    assert nb.interactive.containers.get(container_id).status == ContainerStatus.RUNNING
    assert "No notebook is open" in bob_client.get(APP + "/running").text


def test_signing_in_from_a_jupyterlab_link_goes_back_to_it_with_the_lab_cookie(
    app_client: TestClient,
) -> None:
    """The proxy sends a browser without the lab cookie to sign in (``next`` = the JupyterLab page); after
    it, the browser goes back there, now with the cookie. Any other ``next`` stays refused."""
    lab = f"{CTX}/notebooks/{new_container_id()}/lab/tree/x.ipynb"
    for target, expected, cookie in (
        (lab, lab, True),
        (APP + "/running", APP + "/running", False),
        (f"{CTX}/admin/notebooks", APP + "/jobs", False),
        ("//evil.example/arcgis/notebooks/x", APP + "/jobs", False),
    ):
        page = app_client.get(APP + "/signin", params={"next": target})
        csrf = re.search(r'name="csrf" value="([^"]*)"', page.text).group(1)
        answer = app_client.post(APP + "/signin", headers=ORIGIN, follow_redirects=False, data={
            "csrf": csrf, "username": "alice", "password": PASSWORD, "next": target})  # fmt: skip
        assert answer.status_code == 303 and answer.headers["location"] == expected, target
        set_cookies = answer.headers.get_list("set-cookie")
        assert any(c.startswith(LAB_COOKIE + "=") for c in set_cookies) is cookie, (target, set_cookies)
