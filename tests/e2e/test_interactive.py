"""Interactive notebooks against the real server: openNotebook starts the owner's JupyterLab (a real
jupyter_server from .venv-lab), nbjobs proxies HTTP and the kernel's WebSocket to it, a save becomes a
new version of the item, closeNotebook saves and stops it; and what no one else may do."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.conftest import Server, Session
from tests.e2e.lab_support import (
    bearer,
    close,
    close_everything,
    container_row,
    edit_directly,
    execute_request,
    item_data,
    lab_base,
    open_notebook,
    run_code,
    ssl_context,
    start_kernel,
)
from tests.waiting import eventually

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _nothing_left_open(admin: Session) -> Iterator[None]:
    yield
    close_everything(admin)


def _opened(session: Session, name: str = "trivial.ipynb") -> tuple[str, dict]:
    item_id = session.add_notebook(name)
    job = open_notebook(session, item_id)
    assert job["status"] == "COMPLETED", job
    return item_id, job["results"]


def test_open_notebook_is_a_job_with_the_arcgis_results_and_reuses_the_users_server(alice: Session):
    item_id = alice.add_notebook("trivial.ipynb")
    answer = alice.post("/admin/notebooks/openNotebook", itemId=item_id, **{"async": "true"})
    assert answer["status"] == "success" and answer["jobUrl"].endswith(
        f"/admin/notebooks/jobs/{answer['jobId']}"
    )
    job = alice.wait(answer["jobId"], {"COMPLETED", "FAILED"})
    assert job["status"] == "COMPLETED", job
    assert job["type"] == job["name"] == "openNotebook"
    assert job["customAttributes"]["openNotebookProgress"] == {"message": "Notebook is open", "percent": 100}
    results = job["results"]
    container_id, notebook_id = results["containerId"], results["notebookId"]
    assert results["notebookUrl"] == f"/notebooks/{container_id}/notebooks/{item_id}.ipynb"

    listed = alice.get("/admin/notebooks")
    assert listed["total"] == 1 and listed["nextStart"] == -1
    [entry] = listed["notebooks"]
    assert entry["id"] == notebook_id and entry["itemId"] == item_id and entry["username"] == "alice"
    assert entry["containerId"] == container_id and entry["dateLastActivity"].isdigit()
    assert alice.get(f"/admin/notebooks/{notebook_id}") == entry
    assert [c["id"] for c in alice.get("/admin/system/containers")["containers"]] == [container_id]
    assert [c["id"] for c in alice.get("/admin/notebooks/deployments")["deployments"]] == [container_id]

    # the same item again: the same notebook; another item: the same server (one per user and runtime)
    again = open_notebook(alice, item_id)["results"]
    assert (again["notebookId"], again["containerId"]) == (notebook_id, container_id)
    other_item, other = _opened(alice)
    assert other["containerId"] == container_id and other["notebookId"] != notebook_id
    in_container = alice.get(f"/admin/system/containers/{container_id}/notebooks")["notebooks"]
    assert {n["itemId"] for n in in_container} == {item_id, other_item}
    assert alice.get("/admin/notebooks", num=1) | {"notebooks": None} == {
        "total": 2, "notebooks": None, "num": 1, "start": 1, "nextStart": 2,
    }  # fmt: skip


def test_the_notebook_url_opens_jupyterlab_through_the_proxy_after_the_token_becomes_a_cookie(
    alice: Session, server: Server
):
    item_id, results = _opened(alice)
    origin = server.url.removesuffix("/arcgis")
    with server.client() as browser:
        first = browser.get(server.url + results["notebookUrl"], params={"token": alice.token},
                            headers={"accept": "text/html"})  # fmt: skip
        assert first.status_code == 303 and "token" not in first.headers["location"]
        cookie = first.headers["set-cookie"]
        assert "nbjobs_lab=" in cookie and "HttpOnly" in cookie and "Secure" in cookie
        assert "Path=/arcgis/notebooks/" in cookie and "samesite=lax" in cookie.lower()
        lab = browser.get(origin + first.headers["location"], headers={"accept": "text/html"},
                          follow_redirects=True)  # fmt: skip
        assert lab.status_code == 200 and "<title>JupyterLab</title>" in lab.text
        assert str(lab.url).endswith(f"/arcgis/notebooks/{results['containerId']}/lab/tree/{item_id}.ipynb")
        files = browser.get(lab_base(alice, results["containerId"]) + "/api/contents").json()
        assert f"{item_id}.ipynb" in [f["name"] for f in files["content"]]


def test_a_kernel_round_trip_over_the_proxied_websocket(alice: Session, server: Server):
    item_id, results = _opened(alice)
    kernel = start_kernel(alice, results["containerId"], f"{item_id}.ipynb")
    printed = asyncio.run(run_code(server, alice, results["containerId"], kernel, "print(6*7)"))
    assert printed == "42\n"
    sessions = alice.get(f"/admin/system/containers/{results['containerId']}/sessions")["sessions"]
    assert [s["kernel"]["id"] for s in sessions] == [kernel]


def test_a_save_is_a_new_item_version_that_execute_notebook_then_runs(alice: Session):
    item_id, results = _opened(alice, "trivial.ipynb")
    base = lab_base(alice, results["containerId"])
    path = f"{base}/api/contents/{item_id}.ipynb"
    model = alice.http.get(path, headers=bearer(alice)).json()
    model["content"]["cells"].append({"cell_type": "code", "metadata": {}, "source": "print(6*7)",
                                      "outputs": [], "execution_count": None, "id": "answer"})  # fmt: skip
    saved = alice.http.put(path, headers=bearer(alice), json={"type": "notebook", "format": "json",
                                                              "content": model["content"]})  # fmt: skip
    assert saved.status_code == 200, saved.text[:300]
    assert b"print(6*7)" in item_data(alice, item_id)
    [snapshot] = alice.get("/admin/notebooks/snapshots/list", itemId=item_id)["snapshots"]
    assert snapshot["properties"]["automatic"] is True  # what the item held before the save

    job = alice.post("/admin/notebooks/executeNotebook", itemId=item_id)
    assert alice.wait(job["jobId"], {"COMPLETED", "FAILED"})["status"] == "COMPLETED"

    def written_back() -> bytes | None:
        data = item_data(alice, item_id)
        return data if b'"42\\n"' in data else None

    executed = eventually(written_back, what="the executed notebook written back")
    assert "".join(json.loads(executed)["cells"][-1]["outputs"][0]["text"]) == "42\n"


def test_a_save_that_cannot_reach_the_item_is_a_failed_save_in_jupyterlab(alice: Session):
    item_id, results = _opened(alice)
    alice.post(f"/sharing/rest/content/users/alice/items/{item_id}/delete")
    path = f"{lab_base(alice, results['containerId'])}/api/contents/{item_id}.ipynb"
    model = alice.http.get(path, headers=bearer(alice)).json()
    answer = alice.http.put(path, headers=bearer(alice), json={"type": "notebook", "format": "json",
                                                               "content": model["content"]})  # fmt: skip
    assert answer.status_code == 409
    assert "could not be saved to its item" in answer.json()["message"]  # JupyterLab shows "message"


def test_close_saves_what_the_server_holds_and_the_last_close_stops_it(alice: Session, server: Server):
    item_id, results = _opened(alice)
    container_id = results["containerId"]
    pid = container_row(server, container_id)["pid"]
    edit_directly(server, container_id, f"{item_id}.ipynb", "edited in JupyterLab")
    assert close(alice, results["notebookId"]) == {"status": "success"}
    assert b"edited in JupyterLab" in item_data(alice, item_id)
    assert alice.get("/admin/notebooks")["total"] == 0
    assert alice.get("/admin/system/containers")["containers"] == []
    eventually(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
               what="the Jupyter server process to end")  # fmt: skip
    again = close(alice, results["notebookId"])
    assert again["status"] == "error" and again["code"] == 404, again
    # the alias path of the ArcGIS doc's example, and the family-A path inside the container
    item_2, second = _opened(alice)
    assert alice.post(f"/admin/notebooks/{second['notebookId']}/close") == {"status": "success"}
    item_3, third = _opened(alice)
    cid = third["containerId"]
    closed = alice.post(f"/admin/system/containers/{cid}/notebooks/{third['notebookId']}/closeNotebook")
    assert closed == {"status": "success"}


def test_another_users_container_answers_like_an_unknown_one_and_leaks_nothing(
    alice: Session, bob: Session, admin: Session, server: Server
):
    item_id, results = _opened(alice)
    container_id = results["containerId"]
    address = container_row(server, container_id)["address"]
    path = f"/api/contents/{item_id}.ipynb"
    for session in (bob, admin):  # admins manage containers but do not enter them: that runs code as alice
        theirs = session.http.get(lab_base(session, container_id) + path, headers=bearer(session))
        unknown = session.http.get(lab_base(session, "0" * 24) + path, headers=bearer(session))
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.text.replace(container_id, "X") == unknown.text.replace("0" * 24, "X")
        for secret in (address, "Jupyter", "jupyter", item_id):
            assert secret not in theirs.text
    forged = alice.http.get(lab_base(alice, container_id) + path, headers={"Authorization": "Bearer forged"})
    assert forged.json()["error"]["code"] == 498
    anonymous = alice.http.get(lab_base(alice, container_id) + path)
    assert anonymous.json()["error"]["code"] == 499
    page = alice.http.get(lab_base(alice, container_id) + "/lab", headers={"accept": "text/html"})
    assert page.status_code == 303 and "/arcgis/app/signin?next=" in page.headers["location"]

    async def handshake(session: Session, headers: dict[str, str]) -> int:
        kernel_url = lab_base(session, container_id).replace("https://", "wss://") + "/api/kernels/x/channels"
        try:
            async with connect(kernel_url, ssl=ssl_context(server), additional_headers=headers):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    assert asyncio.run(handshake(bob, bearer(bob))) == 403
    assert asyncio.run(handshake(alice, {"Authorization": "Bearer forged"})) == 403
    # with the lab cookie, a WebSocket from another site is refused
    cookie = {"Cookie": f"nbjobs_lab={alice.token}", "Origin": "https://evil.example"}
    assert asyncio.run(handshake(alice, cookie)) == 403
    # and so is a state-changing request
    cross_site = {"Cookie": f"nbjobs_lab={alice.token}", "Origin": "https://evil.example"}
    post = alice.http.post(lab_base(alice, container_id) + "/api/sessions", json={}, headers=cross_site)
    assert post.status_code == 403


def _open_jobs(session: Session) -> int:
    jobs = session.get("/admin/notebooks/jobs", detail="true", num=1000)["notebookJobs"]
    return sum(job["type"] == "openNotebook" for job in jobs)


def test_bad_open_requests_get_clear_errors_and_start_nothing(alice: Session, bob: Session, admin: Session):
    bobs = bob.add_notebook("trivial.ipynb")
    before = _open_jobs(alice), _open_jobs(admin)
    for session, item_id in ((alice, "0" * 32), (alice, bobs), (admin, bobs)):
        answer = session.post("/admin/notebooks/openNotebook", itemId=item_id)
        assert answer["status"] == "error" and answer["code"] == 400, answer
        assert "Item does not exist or is inaccessible." in answer["messages"][0]
    mine = alice.add_notebook("trivial.ipynb")
    unknown_runtime = alice.post("/admin/notebooks/openNotebook", itemId=mine, notebookRuntimeId="nope")
    assert unknown_runtime["status"] == "error" and unknown_runtime["code"] == 400, unknown_runtime
    not_a_notebook = alice.post("/admin/notebooks/openNotebook", templateNotebook="{not json")
    assert not_a_notebook["status"] == "error" and "templateNotebook" in not_a_notebook["messages"][0]
    assert alice.get("/admin/notebooks")["total"] == 0
    assert (_open_jobs(alice), _open_jobs(admin)) == before
    unknown = alice.post(f"/admin/notebooks/{'0' * 32}/closeNotebook")
    assert unknown["code"] == 404 and "was not found" in unknown["messages"][0]


def test_a_template_notebook_opens_as_a_new_item_of_the_caller(alice: Session):
    template = json.dumps({"cells": [], "metadata": {"title": "From a template"}, "nbformat": 4,
                           "nbformat_minor": 5})  # fmt: skip
    job = open_notebook(alice, "", templateNotebook=template)
    assert job["status"] == "COMPLETED", job
    item = alice.get(f"/sharing/rest/content/items/{job['results']['itemId']}")
    assert item["owner"] == "alice" and item["title"] == "From a template"


def test_a_user_at_max_containers_per_node_gets_a_clear_error(alice: Session, bob: Session, admin: Session):
    admin.post("/admin/notebooks/configuration/update", maxContainersPerNode=1)
    try:
        time.sleep(5.5)  # the configuration is cached for up to 5 s per process
        _opened(alice)
        refused = bob.post("/admin/notebooks/openNotebook", itemId=bob.add_notebook("trivial.ipynb"))
        assert refused["status"] == "error" and refused["code"] == 429, refused
        assert "maxContainersPerNode" in refused["messages"][0]
        assert bob.get("/admin/system/containers")["containers"] == []
        # alice's own next notebook still opens in her server
        assert _opened(alice)[1]["containerId"]
    finally:
        admin.post("/admin/notebooks/configuration/update", maxContainersPerNode=20)
        time.sleep(5.5)


def test_a_websocket_message_over_web_socket_size_is_refused_with_1009(alice: Session, server: Server):
    item_id, results = _opened(alice)
    kernel = start_kernel(alice, results["containerId"], f"{item_id}.ipynb")
    url = (
        lab_base(alice, results["containerId"]).replace("https://", "wss://")
        + f"/api/kernels/{kernel}/channels"
    )

    async def oversized() -> int:
        async with connect(url, ssl=ssl_context(server), additional_headers=bearer(alice),
                           max_size=None) as ws:  # fmt: skip
            _, message = execute_request("x = '" + "a" * (16 * 2**20) + "'")
            await ws.send(message)
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 60)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None
                return closed.rcvd.code
        return 0

    assert asyncio.run(oversized()) == 1009
    # the kernel is fine: the next message goes through
    assert asyncio.run(run_code(server, alice, results["containerId"], kernel, "print(6*7)")) == "42\n"


def test_a_jupyter_server_that_dies_is_noticed(alice: Session, server: Server):
    item_id, results = _opened(alice)
    pid = container_row(server, results["containerId"])["pid"]
    os.killpg(pid, signal.SIGKILL)
    eventually(lambda: alice.get("/admin/notebooks")["total"] == 0, what="the dead server's notebook closed")
    assert alice.get("/admin/system/containers")["containers"] == []
    row = container_row(server, results["containerId"])
    assert row["status"] == "STOPPED" and "exited" in row["reason"]
    # opening again starts a new server
    again = open_notebook(alice, item_id)
    assert again["status"] == "COMPLETED" and again["results"]["containerId"] != results["containerId"]


def _serve_process(server: Server) -> psutil.Process:
    """The `nbjobs serve` process of the shared e2e server (found by its data dir)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "serve" in cmdline and str(server.data_dir) in cmdline:
            return proc
    raise AssertionError("no nbjobs serve process for the e2e server")


def test_100_mb_up_and_down_through_the_proxy_stream_without_growing_the_server(
    alice: Session, server: Server
):
    """JupyterLab's own way of uploading a large file (contents API chunks of 1 MiB, base64) and a plain
    download of it (``/files/…``): the server's RSS stays within 50 MB of where it started."""
    import base64

    item_id, results = _opened(alice)
    base = lab_base(alice, results["containerId"])
    serve = _serve_process(server)
    before = serve.memory_info().rss
    peak = before
    chunk = os.urandom(2**20)
    url = f"{base}/api/contents/big.bin"
    for number in range(1, 101):
        content = base64.b64encode(chunk).decode()
        body = {"type": "file", "format": "base64", "name": "big.bin", "path": "big.bin", "content": content,
                "chunk": -1 if number == 100 else number}  # fmt: skip
        answer = alice.http.put(url, headers=bearer(alice), json=body)
        assert answer.status_code in (200, 201), answer.text[:300]
        peak = max(peak, serve.memory_info().rss)
    received = 0
    with alice.http.stream("GET", f"{base}/files/big.bin", headers=bearer(alice)) as download:
        assert download.status_code == 200
        for part in download.iter_raw():
            received += len(part)
            peak = max(peak, serve.memory_info().rss)
    assert received == 100 * 2**20
    print(f"serve RSS {before / 2**20:.1f} MiB, peak +{(peak - before) / 2**20:.1f} MiB")
    assert peak - before < 50 * 2**20, f"RSS grew {(peak - before) / 2**20:.1f} MiB"
