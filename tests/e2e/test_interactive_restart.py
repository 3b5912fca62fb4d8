"""Interactive notebooks across the server's own faults: ``kill -9`` of ``nbjobs serve`` leaves the
user's JupyterLab running (its own session), and the next start re-adopts it — the kernel's state is
still there; SIGTERM saves every open notebook to its item before stopping the servers, and leaves no
Jupyter process behind."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import ADMIN_PASSWORD, sign_in
from tests.e2e.lab_support import (
    Serve,
    container_row,
    edit_directly,
    item_data,
    open_notebook,
    run_code,
    start_kernel,
)

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    s = Serve(tmp_path / "data")
    s.data_dir.mkdir()
    s.start()
    yield s
    s.stop()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _jupyter_processes(data_dir: Path) -> list[int]:
    """Jupyter servers started for this data dir (their config lives under it)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if "jupyterlab" in cmdline and str(data_dir) in cmdline:
            found.append(proc.info["pid"])
    return found


def test_kill_9_then_restart_re_adopts_the_server_and_sigterm_saves_before_stopping(serve: Serve):
    admin = sign_in(serve.server, "admin", ADMIN_PASSWORD)
    item_id = admin.add_notebook("trivial.ipynb")
    job = open_notebook(admin, item_id)
    assert job["status"] == "COMPLETED", job
    cid = job["results"]["containerId"]
    pid = container_row(serve.server, cid)["pid"]
    kernel = start_kernel(admin, cid, f"{item_id}.ipynb")
    assert asyncio.run(run_code(serve.server, admin, cid, kernel, "kept = 6 * 7\nprint(kept)")) == "42\n"
    admin.http.close()

    assert serve.signal(signal.SIGKILL) == -signal.SIGKILL
    assert _alive(pid)  # the user's server outlives the crash: it runs in a session of its own
    serve.start()
    assert "re-adopted notebook server" in serve.server.output.read_text()
    admin = sign_in(serve.server, "admin", ADMIN_PASSWORD)
    [entry] = admin.get("/admin/notebooks")["notebooks"]
    assert entry["containerId"] == cid and entry["itemId"] == item_id
    # the same kernel, its state intact, through the new process's proxy
    assert asyncio.run(run_code(serve.server, admin, cid, kernel, "print(kept)")) == "42\n"

    edit_directly(serve.server, cid, f"{item_id}.ipynb", "saved at SIGTERM")
    assert b"saved at SIGTERM" not in item_data(admin, item_id)
    admin.http.close()
    assert serve.signal(signal.SIGTERM) == 0
    log = serve.server.output.read_text()
    assert "saved 1 open notebooks before stopping their servers" in log
    assert "Traceback" not in log
    assert not _alive(pid) and _jupyter_processes(serve.data_dir) == []

    serve.start()
    admin = sign_in(serve.server, "admin", ADMIN_PASSWORD)
    assert b"saved at SIGTERM" in item_data(admin, item_id)
    assert admin.get("/admin/notebooks")["total"] == 0
    row = container_row(serve.server, cid)
    assert row["status"] == "STOPPED" and "nbjobs stopped" in row["reason"]
    admin.http.close()
