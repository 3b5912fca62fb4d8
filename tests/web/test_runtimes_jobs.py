"""Jobs on registered runtimes, with real kernels: another interpreter runs the notebook, a broken
environment fails the job clearly."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from argon2 import PasswordHasher
from nbformat.v4 import new_code_cell, new_notebook

from nbjobs.models.accounts import ORG_USER
from nbjobs.models.jobs import FailureReason, JobStatus
from nbjobs.roots.server import Server
from nbjobs.service.authz import OPERATOR
from nbjobs.service.content.items import ItemFields
from nbjobs.service.runtimes.fields import RuntimeFields
from nbjobs.service.runtimes.kernelspecs import jupyter_path
from nbjobs.settings import load_settings

pytestmark = pytest.mark.kernel


def make_venv(root: Path, *, with_ipykernel: bool) -> str:
    """A real venv, made without a download: ipykernel comes from this interpreter's site-packages
    through a .pth file (a venv's --system-site-packages would reach the base Python's, not ours)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    if with_ipykernel:
        purelib = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        Path(purelib, "server-site.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return str(python)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Server]:
    data_dir = tmp_path / "data"
    # Runners find the runtimes' kernelspecs on JUPYTER_PATH; the server sets it for them too.
    environ = {"JUPYTER_PATH": str(jupyter_path(load_settings({}, data_dir=data_dir)))}
    nb = Server.from_settings(load_settings(environ, data_dir=data_dir, workers=1, warm_pool_size=0))
    nb.prepare()
    nb.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    nb.users.add("alice", "correct horse battery", role=ORG_USER)
    yield nb
    nb.stop(grace=10)


def add_item(app: Server, code: str, kernelspec: str = "") -> str:
    nb = new_notebook(cells=[new_code_cell(code)])
    if kernelspec:
        nb.metadata["kernelspec"] = {"name": kernelspec, "display_name": "Python 3", "language": "python"}
    data = nbformat.writes(nb).encode()
    alice = app.users.get("alice").principal()
    return app.items.add(alice, "alice", data, type="Notebook", fields=ItemFields(title="t")).item_id


def run(app: Server, item_id: str, runtime_id: str):
    job = app.notebooks.execute(
        app.users.get("alice"), item_id, runtime_id=runtime_id, update_portal_item=False
    )
    app.pool.run(burst=True)
    return app.store.get(job.job_id)


@pytest.mark.parametrize("kernelspec", ["", "python3"])  # the runtime's kernel wins over the notebook's
def test_a_second_runtime_runs_the_notebook_in_its_own_interpreter(app: Server, tmp_path: Path, kernelspec):
    python = make_venv(tmp_path / "venv", with_ipykernel=True)
    spec = app.runtimes.register(OPERATOR, RuntimeFields(name="Other env", python=python))
    assert [c.ok for c in app.runtimes.validate()] == [True, True]
    job = run(app, add_item(app, "import sys; print(sys.executable)", kernelspec), spec.runtime_id)
    assert job.status == JobStatus.COMPLETED, job.failure
    assert job.runtime == spec.identity
    output = nbformat.reads(app.store.get_blob(job.job_id, "output").decode(), as_version=4)
    assert output.cells[0].outputs[0].text.strip() == python != sys.executable


def test_a_job_on_an_environment_without_ipykernel_fails_clearly(app: Server, tmp_path: Path):
    python = make_venv(tmp_path / "bare", with_ipykernel=False)
    spec = app.runtimes.register(OPERATOR, RuntimeFields(name="Bare", python=python))
    [check] = [c for c in app.runtimes.validate() if not c.ok]
    assert check.runtime == spec and "cannot import ipykernel" in check.error
    job = run(app, add_item(app, "print(1)"), spec.runtime_id)
    assert job.status == JobStatus.FAILED and job.failure is not None
    assert job.failure.reason == FailureReason.KERNEL_DIED
    assert job.failure.message.startswith("The kernel could not be started")
    assert "No module named ipykernel" in job.failure.message  # the kernel's own last words
