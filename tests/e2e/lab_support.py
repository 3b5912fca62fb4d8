"""What the interactive-notebook tests do over and over: open an item, talk to its JupyterLab through
nbjobs' proxy (HTTP and the kernel's WebSocket), reach the Jupyter server behind nbjobs' back (as a
user's own edits in JupyterLab would), and close."""

from __future__ import annotations

import os
import signal
import sqlite3
import ssl
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import ADMIN_PASSWORD, NBJOBS, Server, Session, _free_port
from tests.kernel_ws import execute, execute_request  # noqa: F401 (execute_request: for the tests)
from tests.waiting import eventually


def open_notebook(session: Session, item_id: str, **fields: object) -> dict[str, Any]:
    """openNotebook, then the job once it ended (COMPLETED expected by the caller)."""
    answer = session.post("/admin/notebooks/openNotebook", itemId=item_id, **{"async": "true", **fields})
    assert answer.get("status") == "success", answer
    return session.wait(answer["jobId"], {"COMPLETED", "FAILED"})


def lab_base(session: Session, container_id: str) -> str:
    return f"{session.base}/notebooks/{container_id}"


def bearer(session: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {session.token}"}


def container_row(server: Server, container_id: str) -> dict[str, Any]:
    """The container as stored: its Jupyter server's address, token and pid (never shown by the API)."""
    with sqlite3.connect(server.data_dir / "nbjobs.db") as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM lab_containers WHERE container_id = ?", (container_id,)).fetchone()
    assert row is not None, container_id
    return dict(row)


def direct(server: Server, container_id: str) -> tuple[str, dict[str, str]]:
    """The Jupyter server's own base URL and token header, behind nbjobs' back."""
    row = container_row(server, container_id)
    return f"{row['address']}/arcgis/notebooks/{container_id}", {"Authorization": f"token {row['token']}"}


def edit_directly(server: Server, container_id: str, path: str, marker: str) -> None:
    """Append a markdown cell to the notebook file in the Jupyter server only (not through nbjobs)."""
    base, headers = direct(server, container_id)
    model = httpx.get(f"{base}/api/contents/{path}", headers=headers).json()
    model["content"]["cells"].append({"cell_type": "markdown", "metadata": {}, "source": marker,
                                      "id": uuid.uuid4().hex[:8]})  # fmt: skip
    body = {"type": "notebook", "format": "json", "content": model["content"]}
    assert httpx.put(f"{base}/api/contents/{path}", headers=headers, json=body).status_code == 200


def item_data(session: Session, item_id: str) -> bytes:
    answer = session.http.get(f"{session.base}/sharing/rest/content/items/{item_id}/data",
                              params={"token": session.token})  # fmt: skip
    assert answer.status_code == 200, answer.text[:300]
    return answer.content


def ssl_context(server: Server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert))


def start_kernel(session: Session, container_id: str, path: str) -> str:
    """A session (kernel) for ``path`` through the proxy, as JupyterLab starts one; returns the kernel id."""
    answer = session.http.post(
        lab_base(session, container_id) + "/api/sessions", headers=bearer(session),
        json={"path": path, "type": "notebook", "name": "", "kernel": {"name": "python3"}},
    )  # fmt: skip
    assert answer.status_code == 201, answer.text[:300]
    return str(answer.json()["kernel"]["id"])


async def run_code(server: Server, session: Session, container_id: str, kernel_id: str, code: str) -> str:
    """Run ``code`` in the kernel over the proxied WebSocket; returns what it printed."""
    url = lab_base(session, container_id).replace("https://", "wss://") + f"/api/kernels/{kernel_id}/channels"
    return await execute(url, bearer(session), code, ssl=ssl_context(server))


def close(session: Session, notebook_id: str) -> dict[str, Any]:
    return session.post(f"/admin/notebooks/{notebook_id}/closeNotebook")


def db_path(server: Server) -> Path:
    return server.data_dir / "nbjobs.db"


def close_everything(admin: Session) -> None:
    """The e2e server is shared: whatever a test left open (when it failed half-way) is closed."""
    for notebook in admin.get("/admin/notebooks", num=100)["notebooks"]:
        admin.post(f"/admin/notebooks/{notebook['id']}/closeNotebook")
    for container in admin.get("/admin/system/containers")["containers"]:
        admin.post(f"/admin/system/containers/{container['id']}/terminateContainer")


class Serve:
    """One ``nbjobs serve`` process on a data dir, restartable."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.extra_env = env
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.server = Server(f"https://127.0.0.1:{self.port}/arcgis", data_dir, data_dir / "nbjobs-cert.pem",
                             data_dir / "serve.log")  # fmt: skip

    def start(self) -> None:
        env = {**os.environ, "NBJOBS_ADMIN_PASSWORD": ADMIN_PASSWORD, "NBJOBS_LAB_CHECK_SECONDS": "1",
               **self.extra_env}  # fmt: skip
        with open(self.server.output, "ab") as log:
            self.proc = subprocess.Popen(
                [NBJOBS, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir",
                 str(self.data_dir), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip

        def answers() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.server.output.read_text()
            try:
                with self.server.client() as c:
                    return c.get(self.server.url + "/sharing/rest", params={"f": "json"}).status_code == 200
            except (httpx.HTTPError, OSError):
                return False

        eventually(answers, what="nbjobs serve to answer")

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(90)
        self.proc = None
        return code

    def stop(self) -> None:
        if self.proc is not None:
            self.signal(signal.SIGTERM)
