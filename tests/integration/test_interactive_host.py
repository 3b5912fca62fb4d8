"""The container host and the interactive service in-process, on a real store with real JupyterLab
servers and a manual clock: idle culling (a busy kernel is activity), the nothing-open threshold, a
server that cannot start, and a server that dies."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from nbjobs.clock import ManualClock
from nbjobs.execution.lab.host import base_url
from nbjobs.models.accounts import ORG_USER, User
from nbjobs.models.interactive import Container, ContainerStatus
from nbjobs.models.jobs import Job, JobStatus
from nbjobs.roots.server import Server
from nbjobs.service.authz import OPERATOR
from nbjobs.service.content.items import ItemFields
from nbjobs.service.runtimes.fields import RuntimeFields
from nbjobs.settings import load_settings
from tests.conftest import notebook_bytes
from tests.kernel_ws import execute
from tests.waiting import eventually

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
MINUTE = 60_000


class World:
    def __init__(self, tmp_path: Path, **settings: object) -> None:
        self.clock = ManualClock(time.time_ns() // 1_000_000)
        values: dict[str, object] = dict(data_dir=tmp_path / "data", workers=0, **settings)
        self.nb = Server.from_settings(load_settings({}, **values), clock=self.clock)
        self.nb.prepare()
        self.nb.users.add("alice", "alice-password", role=ORG_USER)
        self.alice: User = self.nb.users.get("alice")
        self.host = self.nb.interactive.host
        assert self.host is not None

    def item(self) -> str:
        data = notebook_bytes("trivial.ipynb")
        who = self.alice.principal()
        return self.nb.items.add(who, "alice", data, type="Notebook", fields=ItemFields(title="t")).item_id

    def open(self, item_id: str) -> Job:
        """openNotebook, run on this thread as a worker would run it (claimed, then handed to the host)."""
        job = self.nb.interactive.open(self.alice, item_id)
        lease = int(self.nb.settings.execution.lease_seconds * 1000)
        claimed = self.nb.store.claim(job.job_id, 1, "test/1", self.clock(), lease)
        assert claimed is not None
        ended = self.host.run(claimed)
        assert ended is not None
        return ended

    def container(self, container_id: str) -> Container:
        found = self.nb.interactive.containers.get(container_id)
        assert found is not None
        return found

    def lab(self, container_id: str) -> tuple[str, dict[str, str]]:
        c = self.container(container_id)
        return c.address + base_url("arcgis", container_id).rstrip("/"), {"Authorization": f"token {c.token}"}

    def close(self) -> None:
        self.host.close()
        self.nb.store.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _edit(world: World, container_id: str, path: str, marker: str) -> None:
    base, headers = world.lab(container_id)
    model = httpx.get(f"{base}/api/contents/{path}", headers=headers).json()
    model["content"]["cells"].append({"cell_type": "markdown", "metadata": {}, "source": marker, "id": "m1"})
    body = {"type": "notebook", "format": "json", "content": model["content"]}
    assert httpx.put(f"{base}/api/contents/{path}", headers=headers, json=body).status_code == 200


def test_an_idle_server_is_culled_after_idle_notebook_threshold_and_its_notebook_saved(world: World):
    item_id = world.item()
    job = world.open(item_id)
    assert job.status == JobStatus.COMPLETED, job.failure
    cid = job.results["containerId"]
    pid = world.container(cid).pid
    _edit(world, cid, f"{item_id}.ipynb", "unsaved work")
    idle = int(world.nb.config.current()["idleNotebookThreshold"])
    world.clock.advance((idle - 1) * MINUTE)
    world.host.tick()
    assert world.nb.interactive.cull() == 0
    world.clock.advance(2 * MINUTE)
    world.host.tick()
    assert world.nb.interactive.cull() == 1
    container = world.container(cid)
    assert container.status == ContainerStatus.STOPPED and "idleNotebookThreshold" in container.reason
    assert b"unsaved work" in world.nb.items.data(world.alice.principal(), item_id)[1]
    assert world.nb.interactive.containers.count_notebooks(container_id=cid) == 0
    eventually(lambda: _gone(pid), what="the culled server's process to end")


def _kernel_url(address: str, kernel_id: str) -> str:
    return address.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"


def test_a_busy_kernel_with_no_browser_attached_is_not_idle(world: World):
    item_id = world.item()
    cid = world.open(item_id).results["containerId"]
    base, headers = world.lab(cid)
    session = httpx.post(f"{base}/api/sessions", headers=headers,
                         json={"path": f"{item_id}.ipynb", "type": "notebook", "name": "",
                               "kernel": {"name": "python3"}}).json()  # fmt: skip
    kernel_id = session["kernel"]["id"]
    # straight to the Jupyter server (no browser, no proxy), left running
    asyncio.run(execute(_kernel_url(base, kernel_id), headers, "import time\ntime.sleep(600)", until="busy"))
    eventually(lambda: httpx.get(f"{base}/api/kernels/{kernel_id}", headers=headers).json()["execution_state"]
               == "busy", what="the kernel to be busy")  # fmt: skip
    idle = int(world.nb.config.current()["idleNotebookThreshold"])
    world.clock.advance((idle + 5) * MINUTE)  # no browser traffic for longer than the threshold...
    world.host.tick()  # ...but the kernel is computing: that is activity
    assert world.nb.interactive.cull() == 0
    assert world.container(cid).status == ContainerStatus.RUNNING

    httpx.post(f"{base}/api/kernels/{kernel_id}/interrupt", headers=headers)
    eventually(lambda: httpx.get(f"{base}/api/kernels/{kernel_id}", headers=headers).json()["execution_state"]
               == "idle", what="the kernel to be idle")  # fmt: skip
    world.clock.advance((idle + 5) * MINUTE)
    world.host.tick()
    assert world.nb.interactive.cull() == 1
    assert world.container(cid).status == ContainerStatus.STOPPED


def test_a_server_with_nothing_open_stops_after_container_created_threshold(world: World):
    cid = world.open(world.item()).results["containerId"]
    [notebook] = world.nb.interactive.containers.notebooks(container_id=cid)
    world.nb.interactive.containers.close_notebook(notebook.notebook_id, world.clock(), "closed in the test")
    threshold = int(world.nb.config.current()["containerCreatedThreshold"])
    world.clock.advance((threshold - 1) * MINUTE)
    assert world.nb.interactive.cull() == 0
    world.clock.advance(2 * MINUTE)
    assert world.nb.interactive.cull() == 1
    container = world.container(cid)
    assert container.status == ContainerStatus.STOPPED and "containerCreatedThreshold" in container.reason


def test_a_server_that_cannot_start_fails_the_job_with_its_last_stderr_line(tmp_path: Path):
    world = World(tmp_path, lab_python=sys.executable)  # nbjobs' own environment has no JupyterLab
    try:
        job = world.open(world.item())
        assert job.status == JobStatus.FAILED
        assert job.failure is not None and job.failure.reason == "notebook_server_failed"
        assert "No module named jupyterlab" in job.failure.message
        assert "exited with code 1" in job.failure.message
        [container] = world.nb.interactive.containers.list()
        assert container.status == ContainerStatus.FAILED and "No module named jupyterlab" in container.reason
        assert world.nb.interactive.containers.count_live() == 0  # nothing half-started
        assert world.nb.interactive.notebooks(world.alice)[0] == 0
    finally:
        world.close()


def test_a_server_that_dies_is_noticed_and_a_new_one_starts_on_the_next_open(world: World):
    item_id = world.item()
    cid = world.open(item_id).results["containerId"]
    os.killpg(world.container(cid).pid, signal.SIGKILL)
    eventually(lambda: (world.host.tick(), world.container(cid).status)[1] == ContainerStatus.STOPPED,
               what="the dead server noticed")  # fmt: skip
    assert "exited" in world.container(cid).reason
    assert world.nb.interactive.notebooks(world.alice)[0] == 0
    again = world.open(item_id)
    assert again.status == JobStatus.COMPLETED and again.results["containerId"] != cid


def _runtime(world: World, **fields: object) -> str:
    spec = RuntimeFields(name=f"lab {uuid.uuid4().hex[:6]}", python=sys.executable, **fields)  # type: ignore[arg-type]
    return world.nb.runtimes.register(OPERATOR, spec).runtime_id


def test_the_runtimes_limits_apply_to_the_whole_server_and_go_with_it(world: World):
    runtime_id = _runtime(world, max_memory=2.0, max_memory_unit="g", max_cpu=1.0)
    job = world.nb.interactive.open(world.alice, world.item(), runtime_id=runtime_id)
    lease = int(world.nb.settings.execution.lease_seconds * 1000)
    ended = world.host.run(world.nb.store.claim(job.job_id, 1, "test/1", world.clock(), lease))
    assert ended is not None and ended.status == JobStatus.COMPLETED, ended
    cid = ended.results["containerId"]
    container = world.container(cid)
    assert container.runtime_id == runtime_id
    backend = world.host.limits.name
    two_gib = 2 * 2**30
    if backend == "cgroup-v1":
        group = Path("/sys/fs/cgroup/memory/nbjobs") / f"lab-{cid}"
        assert int((group / "memory.limit_in_bytes").read_text()) == two_gib
        assert str(container.pid) in (group / "cgroup.procs").read_text().split()
        quota = Path("/sys/fs/cgroup/cpu/nbjobs") / f"lab-{cid}" / "cpu.cfs_quota_us"
        assert int(quota.read_text()) == 100_000
    elif backend == "cgroup-v2":
        group = Path("/sys/fs/cgroup/nbjobs") / f"lab-{cid}"
        assert int((group / "memory.max").read_text()) == two_gib
        assert str(container.pid) in (group / "cgroup.procs").read_text().split()
    else:
        soft, _ = psutil.Process(container.pid).rlimit(psutil.RLIMIT_AS)
        assert soft >= two_gib
    world.nb.interactive.terminate(world.alice, cid)
    assert world.container(cid).status == ContainerStatus.STOPPED
    if backend == "cgroup-v1":
        assert not (Path("/sys/fs/cgroup/memory/nbjobs") / f"lab-{cid}").exists()


def test_an_unknown_or_disabled_runtime_is_refused_before_anything_starts(world: World):
    from nbjobs.errors import RuntimeDisabled, UnknownRuntimeId

    item_id = world.item()
    with pytest.raises(UnknownRuntimeId):
        world.nb.interactive.open(world.alice, item_id, runtime_id="no-such-runtime")
    runtime_id = _runtime(world)
    world.nb.runtimes.update(OPERATOR, runtime_id, RuntimeFields(disabled=True))
    with pytest.raises(RuntimeDisabled):
        world.nb.interactive.open(world.alice, item_id, runtime_id=runtime_id)
    assert world.nb.store.count() == 0 and world.nb.interactive.containers.list() == []


SYSTEM_PYTHON = "/usr/bin/python3"


def _venv_onto(base: Path, site_packages: str) -> Path:
    """A venv of the system python (which the kernel user may execute: this project's interpreters live
    under /root, 0700) that imports from ``site_packages`` through a .pth."""
    import subprocess

    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(base)], check=True)
    site = next((base / "lib").glob("python*/site-packages"))
    (site / "onto.pth").write_text(site_packages + "\n")
    return base / "bin" / "python"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching the server's user needs a root nbjobs")
@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="needs a python the kernel user may execute")
def test_with_a_kernel_user_the_whole_server_and_its_kernels_run_as_that_user():
    import pwd
    import shutil
    import sysconfig
    import tempfile

    from nbjobs.execution.lab.server import lab_python

    nobody = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="nbjobs-lab-user-"))
    root.chmod(0o755)
    try:
        lab_site = next((Path(lab_python("")).parent.parent / "lib").glob("python*/site-packages"))
        lab = _venv_onto(root / "lab", str(lab_site))
        kernel = _venv_onto(root / "kernel", sysconfig.get_paths()["purelib"])
        world = World(root, kernel_user="nobody", lab_python=str(lab))
        try:
            runtime_id = _runtime(world)
            world.nb.runtimes.update(OPERATOR, runtime_id, RuntimeFields(python=str(kernel)))
            job = world.nb.interactive.open(world.alice, world.item(), runtime_id=runtime_id)
            lease = int(world.nb.settings.execution.lease_seconds * 1000)
            ended = world.host.run(world.nb.store.claim(job.job_id, 1, "test/1", world.clock(), lease))
            assert ended is not None and ended.status == JobStatus.COMPLETED, ended.failure
            cid = ended.results["containerId"]
            assert psutil.Process(world.container(cid).pid).uids().real == nobody.pw_uid
            base, headers = world.lab(cid)
            session = httpx.post(f"{base}/api/sessions", headers=headers,
                                 json={"path": f"{ended.results['itemId']}.ipynb", "type": "notebook",
                                       "name": "", "kernel": {"name": "python3"}}).json()  # fmt: skip
            kernel_id = session["kernel"]["id"]
            database = world.nb.settings.store.data_dir / "nbjobs.db"
            code = (
                f"import os\nprint(os.getuid())\ntry:\n    open({str(database)!r}).read()\n"
                "except OSError as e:\n    print(type(e).__name__)"
            )
            printed = asyncio.run(execute(_kernel_url(base, kernel_id), headers, code))
            assert printed.split() == [str(nobody.pw_uid), "PermissionError"]
        finally:
            world.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
