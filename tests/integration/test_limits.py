"""Runtime limits enforced on real kernels, and the per-job credentials a kernel gets."""

from __future__ import annotations

import json

import nbformat
import pytest

from nbjobs.errors import InvalidToken
from nbjobs.execution.limits import CgroupV1Backend, CgroupV2Backend, RlimitBackend, detect_backend
from nbjobs.models.jobs import FailureReason, JobStatus
from nbjobs.models.runtimes import RuntimeSpec

from .conftest import ADMIN

pytestmark = pytest.mark.kernel

LIMITED = RuntimeSpec("limited0000000000000000000000000", "Limited", "1.0", "python3", max_memory=300,
                      max_memory_unit="m", max_cpu=0.5)  # fmt: skip


def with_runtime(app, spec: RuntimeSpec, backend=None):
    """Point the app's supervisor at one registered runtime (the registry's role) and a limits backend."""
    sup = app.pool.supervisor
    sup.runtimes = lambda runtime_id: spec if runtime_id == spec.runtime_id else None
    if backend is not None:
        sup.limits = backend
    return app


def printed(app, job_id: str) -> str:
    nb = nbformat.reads(app.store.get_blob(job_id, "output").decode(), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def run(app, name: str, golden, spec: RuntimeSpec = LIMITED):
    job = app.service.submit(ADMIN, golden(name), runtime=spec.identity)
    app.pool.run(burst=True)
    return app.store.get(job.job_id)


def test_this_machine_enforces_limits_with_cgroups():
    # CI runs as root on cgroup v1; elsewhere the fallback is documented in docs/runtimes.md
    backend = detect_backend()
    assert isinstance(backend, CgroupV1Backend | CgroupV2Backend | RlimitBackend)
    if backend.name == "rlimit":
        pytest.skip("no writable cgroup hierarchy here: RLIMIT_AS fallback in use")


def test_memory_bomb_is_killed_by_the_cgroup_limit(make_app, golden):
    backend = detect_backend()
    if backend.name == "rlimit":
        pytest.skip("needs a writable cgroup hierarchy")
    app = with_runtime(make_app(warm_pool_size=1), LIMITED, backend)
    ended = run(app, "memory_bomb.ipynb", golden)
    assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.MEMORY_LIMIT
    assert "300 MiB" in ended.failure.message
    assert "allocating" in printed(app, ended.job_id)  # the output up to the kill is kept
    after = run(app, "trivial.ipynb", golden)
    assert after.status == JobStatus.COMPLETED  # the server and its pool carry on


def test_memory_bomb_under_rlimit_fails_with_memory_limit(make_app, golden):
    app = with_runtime(make_app(warm_pool_size=0), LIMITED, RlimitBackend())
    ended = run(app, "memory_bomb.ipynb", golden)
    assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.MEMORY_LIMIT
    assert ended.failure.ename == "MemoryError" and ended.failure.cell_index == 1


def test_cpu_limit_throttles_the_kernel(make_app, golden):
    backend = detect_backend()
    if backend.name == "rlimit":
        pytest.skip("CPU limits are advisory without cgroups")
    app = with_runtime(make_app(warm_pool_size=1), LIMITED, backend)
    ended = run(app, "cpu_probe.ipynb", golden)
    assert ended.status == JobStatus.COMPLETED, ended.failure
    share = float(printed(app, ended.job_id))
    assert share < 0.7, f"a 0.5-CPU kernel used {share} CPU"


def test_cpu_spin_with_a_two_second_deadline_fails_with_timeout(make_app, golden):
    two_seconds = RuntimeSpec("spin", "Spin", "1", "python3", max_wall_minutes=2 / 60)
    app = with_runtime(make_app(), two_seconds)
    ended = run(app, "busy_loop.ipynb", golden, two_seconds)
    assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.TIMEOUT
    assert ended.end_time - ended.start_time < 40_000  # the 2 s deadline and the staged stop, with slack


def test_each_job_gets_a_token_for_its_owner_that_dies_with_the_job(make_app, golden):
    app = make_app()
    app.users.add("carol", "carol-password-1")
    carol = app.users.get("carol")
    job = app.service.submit(carol.principal(), golden("reads_auth_file.ipynb"))
    app.pool.run(burst=True)
    ended = app.store.get(job.job_id)
    assert ended.status == JobStatus.COMPLETED, ended.failure
    auth = json.loads(printed(app, job.job_id))
    assert set(auth) == {"privatePortalUrl", "publicPortalUrl", "referer", "token", "expiration"}
    assert auth["privatePortalUrl"].endswith("/arcgis")
    with pytest.raises(InvalidToken):  # revoked when the job ended
        app.tokens.authenticate(auth["token"])
