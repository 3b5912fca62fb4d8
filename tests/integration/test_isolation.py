"""Kernels as another OS user: a notebook cannot read the server's database or list its data dir."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import nbformat
import pytest

from nbjobs.models.jobs import JobInputs, JobStatus
from nbjobs.models.parameters import parse_parameters

from .conftest import ADMIN

pytestmark = pytest.mark.kernel


def facts_of(app, job_id: str) -> dict:
    nb = nbformat.reads(app.store.get_blob(job_id, "output").decode(), as_version=4)
    return json.loads(nb.cells[-1].outputs[0].text)


@pytest.fixture
def open_dirs():
    """Directories outside pytest's private (0700) tmp: the kernel user must be able to reach them."""
    made = []

    def make() -> Path:
        path = Path(tempfile.mkdtemp(prefix="nbjobs-iso-"))
        path.chmod(0o755)
        made.append(path)
        return path

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def kernel_python_for(user_dirs, data_dir: Path) -> None:
    """Point the python3 kernelspec at an interpreter the kernel user may execute.

    This project's own interpreter lives under /root (0700), so nobody could not run it; a venv of
    the system python with a .pth onto our site-packages can (docs/runtimes.md says why).
    """
    venv = user_dirs() / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "nbjobs-server.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    spec = data_dir / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "py", "language": "python"}))


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching the kernel's user needs a root server")
@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="needs a python the kernel user may execute")
@pytest.mark.parametrize("pool", [0, 1])  # cold start and warm pool hand-over
def test_a_kernel_user_cannot_read_the_servers_database(make_app, golden, pool, open_dirs):
    nobody = pwd.getpwnam("nobody")
    data_dir = open_dirs() / "data"
    kernel_python_for(open_dirs, data_dir)
    app = make_app(kernel_user="nobody", warm_pool_size=pool, data_dir=data_dir)
    database = str(app.settings.store.data_dir / "nbjobs.db")
    job = app.service.submit(ADMIN, golden("probes_isolation.ipynb"), inputs=JobInputs(
        notebook_parameters=parse_parameters({"database": database})))  # fmt: skip
    app.pool.run(burst=True)
    ended = app.store.get(job.job_id)
    assert ended.status == JobStatus.COMPLETED, ended.failure
    facts = facts_of(app, job.job_id)
    assert facts["uid"] == nobody.pw_uid
    assert facts["read_database"] == "PermissionError"
    assert facts["list_data_dir"] == "PermissionError"
    assert facts["write_data_dir"] == "PermissionError"  # outside its directory: not the server's files
    assert facts["read_auth_file"] == "ok" and facts["write_cwd"] == "ok"
    assert facts["write_tmp"] == "ok"  # world-writable places stay writable (docs/runtimes.md)


def test_the_servers_secrets_are_not_in_the_kernel_environment(make_app, golden, monkeypatch):
    from nbjobs.settings import load_settings

    settings = load_settings({"MY_SERVICE_PASSWORD": "hunter2", "PATH": os.environ["PATH"]})
    app = make_app(kernel_env=settings.execution.kernel_env)
    job = app.service.submit(ADMIN, golden("probes_isolation.ipynb"), inputs=JobInputs(
        notebook_parameters=parse_parameters({"database": str(app.settings.store.data_dir / "nbjobs.db")}),
    ))  # fmt: skip
    app.pool.run(burst=True)
    assert facts_of(app, job.job_id)["secret_env"] is None


@pytest.mark.parametrize("keep", [False, True])
def test_the_job_directory_is_removed_unless_configured(make_app, golden, keep):
    app = make_app(keep_job_dirs=keep)
    job = app.service.submit(ADMIN, golden("probes_isolation.ipynb"), inputs=JobInputs(
        notebook_parameters=parse_parameters({"database": str(app.settings.store.data_dir / "nbjobs.db")}),
    ))  # fmt: skip
    app.pool.run(burst=True)
    assert facts_of(app, job.job_id)["write_cwd"] == "ok"
    work = app.settings.store.data_dir / "jobs" / f"{job.job_id}-1" / "work"
    assert (work / "mine.txt").exists() is keep
