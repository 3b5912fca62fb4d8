"""Live progress in the distributed mode: the job runs in an `nbjobs worker` process (PostgreSQL and
Redis for real) and a separate API server streams its cells and output over HTTP while it runs."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from nbjobs.models.accounts import ORG_USER
from nbjobs.models.parameters import parse_parameters
from nbjobs.web.app import create_app
from tests.conftest import notebook_bytes

from .cluster import REDIS_URL, fresh_database, make_cluster, unavailable

pytestmark = [pytest.mark.kernel, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        unavailable(f"Redis at {REDIS_URL}", exc)
    client.flushdb()
    tmp = tmp_path_factory.mktemp("live-cluster")
    for database_url in fresh_database():
        c = make_cluster(tmp, database_url, REDIS_URL)
        try:
            c.worker = c.start_worker("w1", "--concurrency", "1")
            yield c
        finally:
            c.stop_all()
            c.api.stop(grace=5)
            client.flushdb()
            client.close()


@pytest.fixture(scope="module")
def api_url(cluster):
    """The API server's web app over real HTTP (uvicorn), on the same database as the worker."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cluster.api.web), host="127.0.0.1", port=port,
                                           log_level="warning", log_config=None))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/{cluster.api.settings.server.context}"
    server.should_exit = True
    thread.join(10)


def test_a_job_on_a_worker_streams_its_output_through_the_api_server(cluster, api_url):
    user = cluster.api.users.add("alice", "alice-password-1", role=ORG_USER)
    token = cluster.api.tokens.issue(user).token
    job = cluster.api.service.submit(
        user.principal(), notebook_bytes("prints_slowly.ipynb"),
        parameters=parse_parameters({"steps": 6, "pause": 0.4}),
    )  # fmt: skip
    seen: list[dict] = []
    names: list[str] = []
    url = f"{api_url}/admin/notebooks/jobs/{job.job_id}/events"
    auth = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(timeout=httpx.Timeout(60, read=30)) as http,
        http.stream("GET", url, headers=auth) as answer,
    ):
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith("event:"):
                names.append(line[6:].strip())
            elif line.startswith("data:") and names[-1] == "job":
                seen.append(json.loads(line[5:]))
    assert names[-1] == "end"
    printed = [
        t["text"] for e in seen if e["status"] == "EXECUTING" for t in e["output"] if t["name"] == "stdout"
    ]
    # seen while it ran on the worker: a tail with some of the steps, not yet all of them
    assert any("step 1" in text and "step 5" not in text for text in printed), printed
    last = seen[-1]
    assert last["status"] == "COMPLETED"
    stdout = next(t for t in last["output"] if t["name"] == "stdout")
    assert stdout["text"] == "".join(f"step {i}\n" for i in range(6)) and stdout["end"] == len(stdout["text"])
    final = cluster.api.service.get(user.principal(), job.job_id)
    assert final.worker_id.startswith(cluster.api.host_prefix)  # it ran in the worker process…
    assert not final.worker_id.startswith(cluster.api.boot_prefix)  # …not in the API server's
