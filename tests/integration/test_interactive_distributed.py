"""Interactive notebooks in distributed mode: the API server (broker mode, no pool) takes openNotebook,
a real `nbjobs worker` starts the user's JupyterLab on its machine and advertises its address; the API
server proxies to it and closes it; SIGTERM of the worker saves what is open before stopping."""

from __future__ import annotations

import signal
import socket

import httpx
import psutil
import pytest
from starlette.testclient import TestClient

from nbjobs.models.accounts import ORG_USER
from nbjobs.models.interactive import ContainerStatus
from nbjobs.models.jobs import ENDED, JobStatus
from nbjobs.service.content.items import ItemFields
from nbjobs.web.app import create_app
from tests.conftest import notebook_bytes

from .cluster import REDIS_URL, Cluster, alive, fresh_database, make_cluster, unavailable, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        unavailable(f"Redis at {REDIS_URL}", exc)
    client.flushdb()
    tmp = tmp_path_factory.mktemp("lab-cluster")
    for database_url in fresh_database():
        c = make_cluster(tmp, database_url, REDIS_URL)
        c.api.users.add("alice", "alice-password", role=ORG_USER)
        try:
            c.w1 = c.start_worker("w1", "--concurrency", "1", NBJOBS_LAB_CHECK_SECONDS="0.5")
            yield c
        finally:
            c.stop_all()
            c.api.stop(grace=5)
            client.flushdb()
            client.close()


def _open(c: Cluster) -> tuple[str, dict]:
    alice = c.api.users.get("alice")
    data = notebook_bytes("trivial.ipynb")
    item = c.api.items.add(alice.principal(), "alice", data, type="Notebook", fields=ItemFields(title="t"))
    job = c.api.web.interactive.open(alice, item.item_id)
    ended = c.wait_job(job.job_id, lambda j: j.status in ENDED)
    assert ended.status == JobStatus.COMPLETED, (ended.failure, c.w1.text()[-3000:])
    return item.item_id, ended.results


def test_the_worker_hosts_the_server_and_the_api_server_proxies_to_it_and_closes_it(cluster: Cluster):
    c = cluster
    assert c.api.interactive.host is None  # broker mode: the API server starts no Jupyter server itself
    item_id, results = _open(c)
    cid = results["containerId"]
    container = c.api.interactive.containers.get(cid)
    assert container is not None and container.status == ContainerStatus.RUNNING
    assert alive(container.pid) and container.pid in [p.pid for p in psutil.Process(c.w1.pid).children()]
    assert container.node == socket.gethostname() and container.address.startswith("http://127.0.0.1:")
    alice = c.api.users.get("alice")
    token = c.api.tokens.issue(alice, 60).token
    with TestClient(create_app(c.api.web), base_url="https://testserver") as client:
        listing = client.get(
            f"/arcgis/notebooks/{cid}/api/contents", headers={"Authorization": f"Bearer {token}"}
        )
        assert listing.status_code == 200, listing.text[:300]
        assert f"{item_id}.ipynb" in [f["name"] for f in listing.json()["content"]]
        closed = client.post(f"/arcgis/admin/notebooks/{results['notebookId']}/closeNotebook",
                             data={"f": "json", "token": token})  # fmt: skip
        assert closed.json() == {"status": "success"}
    # the API server asked; the worker that runs it stops it
    wait_until(lambda: c.api.interactive.containers.get(cid).status == ContainerStatus.STOPPED, 60,
               "the worker to stop the closed server")  # fmt: skip
    wait_until(lambda: not alive(container.pid), 30, "the Jupyter server process to end")


def test_sigterm_of_the_worker_saves_open_notebooks_before_stopping_them(cluster: Cluster):
    c = cluster
    item_id, results = _open(c)
    container = c.api.interactive.containers.get(results["containerId"])
    assert container is not None
    base = f"{container.address}/arcgis/notebooks/{container.container_id}"
    headers = {"Authorization": f"token {container.token}"}
    model = httpx.get(f"{base}/api/contents/{item_id}.ipynb", headers=headers).json()
    cell = {"cell_type": "markdown", "metadata": {}, "source": "saved by the worker", "id": "w1"}
    model["content"]["cells"].append(cell)
    body = {"type": "notebook", "format": "json", "content": model["content"]}
    assert httpx.put(f"{base}/api/contents/{item_id}.ipynb", headers=headers, json=body).status_code == 200
    c.w1.proc.send_signal(signal.SIGTERM)
    assert c.w1.proc.wait(60) == 0
    assert "saved 1 open notebooks before stopping their servers" in c.w1.text()
    alice = c.api.users.get("alice").principal()
    assert b"saved by the worker" in c.api.items.data(alice, item_id)[1]
    assert c.api.interactive.containers.get(container.container_id).status == ContainerStatus.STOPPED
    wait_until(lambda: not alive(container.pid), 30, "the Jupyter server process to end")
