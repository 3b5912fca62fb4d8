"""RuntimeService over the in-memory store and fake environments (the store contract: contracts/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbjobs.clock import ManualClock
from nbjobs.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RuntimeDisabled,
    RuntimeNotFound,
    UnknownRuntimeId,
)
from nbjobs.models.accounts import ORG_ADMIN, ORG_USER, User
from nbjobs.models.runtimes import DEFAULT_RUNTIME, RuntimeSpec, StartStatus
from nbjobs.service.authz import OPERATOR, USER_PRIVILEGES
from nbjobs.service.runtimes.environments import FakeEnvironments
from nbjobs.service.runtimes.fields import RuntimeFields, runtime_name_of
from nbjobs.service.runtimes.kernelspecs import kernel_dir
from nbjobs.service.runtimes.registry import RuntimeService
from nbjobs.settings import load_settings
from nbjobs.store.memory.runtimes import MemoryRuntimeStore

SERVER_PYTHON = "/server/bin/python"
ALICE = User("alice", "x", ORG_USER, USER_PRIVILEGES, 0, 0)
ADMIN = User("admin", "x", ORG_ADMIN, (), 0, 0)


def executable(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def env_python(tmp_path: Path) -> str:
    return executable(tmp_path / "env" / "bin" / "python")


@pytest.fixture
def environments(env_python: str) -> FakeEnvironments:
    return FakeEnvironments(
        {SERVER_PYTHON: [("ipykernel", "6.0")], env_python: [("numpy", "2.0"), ("Zed", "1")]}
    )


@pytest.fixture
def service(tmp_path: Path, environments: FakeEnvironments) -> RuntimeService:
    svc = RuntimeService(
        MemoryRuntimeStore(),
        ManualClock(1_000),
        kernels=tmp_path / "jupyter" / "kernels",
        environments=environments,
        server_python=SERVER_PYTHON,
    )
    svc.ensure_default()
    return svc


def kernel_json(service: RuntimeService, spec: RuntimeSpec) -> dict:
    return json.loads((service.kernels / spec.kernel_name / "kernel.json").read_text())


# -- the default ------------------------------------------------------------------------------------


def test_ensure_default_seeds_python_3_standard_once(service: RuntimeService):
    first = service.default()
    assert service.ensure_default() == first
    assert [r.runtime_id for r in service.list()] == [DEFAULT_RUNTIME.runtime_id]
    assert first.identity == DEFAULT_RUNTIME
    assert first.is_default and first.python == "" and first.kernel_name == "python3"
    assert service.python_of(first) == SERVER_PYTHON


def test_kernel_dir_is_under_the_data_dir(tmp_path: Path):
    settings = load_settings({}, data_dir=tmp_path)
    assert kernel_dir(settings) == (tmp_path / "jupyter" / "kernels").absolute()


# -- register ---------------------------------------------------------------------------------------


def test_register_writes_a_kernelspec_for_the_interpreter(service: RuntimeService, env_python: str):
    spec = service.register(
        OPERATOR, RuntimeFields(name="Geo", python=env_python, max_memory=2, max_memory_unit="G", max_cpu=1)
    )
    assert spec.kernel_name == "nbjobs-" + spec.runtime_id[:12] and len(spec.runtime_id) == 32
    assert spec.python == env_python and spec.memory_bytes == 2 * 1024**3 and spec.max_memory_unit == "g"
    assert kernel_json(service, spec)["argv"] == [
        env_python,
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
    ]
    assert service.get(spec.runtime_id) == spec
    assert [r.name for r in service.list()] == ["Python 3 Standard", "Geo"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (RuntimeFields(name="", python="{python}"), "needs a name"),
        (RuntimeFields(name="python 3 STANDARD", python="{python}"), "already exists"),
        (RuntimeFields(name="X"), "python .* or imageId"),
        (RuntimeFields(name="X", python="/no/such/python"), "does not exist"),
        (RuntimeFields(name="X", python="{dir}"), "not an executable file"),
        (RuntimeFields(name="X", python="{not_exec}"), "not an executable file"),
        (RuntimeFields(name="X", python="{python}", max_memory=-1), "maxMemory"),
        (RuntimeFields(name="X", python="{python}", max_cpu=-0.5), "maxCpu"),
        (RuntimeFields(name="X", python="{python}", max_cpu=float("nan")), "maxCpu"),
        (RuntimeFields(name="X", python="{python}", max_memory_unit="t"), "expected one of b, k, m, g"),
        (RuntimeFields(name="X", python="{python}", max_swap_memory_unit="gb"), "maxSwapMemoryUnit"),
        (RuntimeFields(name="X", image_id="no-such-kernel-here"), "no kernelspec named"),
    ],
)
def test_register_rejects_bad_fields(
    service: RuntimeService, env_python: str, tmp_path: Path, fields, message
):
    not_exec = tmp_path / "plain"
    not_exec.write_text("")
    python = (fields.python or "").format(python=env_python, dir=tmp_path, not_exec=not_exec) or None
    with pytest.raises(InvalidRequest, match=message):
        service.register(OPERATOR, RuntimeFields(**{**fields.__dict__, "python": python}))
    assert len(service.list()) == 1
    assert not service.kernels.exists() or not any(service.kernels.iterdir())


def test_register_by_image_id_uses_an_installed_kernelspec(service: RuntimeService, env_python: str):
    geo = service.register(OPERATOR, RuntimeFields(name="Geo", python=env_python))
    again = service.register(OPERATOR, RuntimeFields(name="Same kernel", image_id=geo.kernel_name))
    assert again.kernel_name == geo.kernel_name and again.python == env_python
    native = service.register(OPERATOR, RuntimeFields(name="Native", image_id="python3"))
    assert native.python == "" and service.python_of(native) == SERVER_PYTHON


# -- update / unregister / restore ------------------------------------------------------------------


def test_update_changes_only_given_fields(service: RuntimeService, env_python: str, tmp_path: Path):
    spec = service.register(OPERATOR, RuntimeFields(name="Geo", python=env_python, max_cpu=2))
    other = executable(tmp_path / "other" / "bin" / "python")
    changed = service.update(
        OPERATOR, spec.runtime_id, RuntimeFields(name="Geo 2", python=other, disabled=True)
    )
    assert (changed.name, changed.python, changed.max_cpu, changed.disabled) == ("Geo 2", other, 2, True)
    assert changed.kernel_name == spec.kernel_name and changed.updated >= spec.updated
    assert kernel_json(service, changed)["argv"][0] == other
    with pytest.raises(InvalidRequest, match="already exists"):
        service.update(OPERATOR, spec.runtime_id, RuntimeFields(name="Python 3 Standard"))
    with pytest.raises(RuntimeNotFound):
        service.update(OPERATOR, "f" * 32, RuntimeFields(max_cpu=1))


def test_the_default_keeps_its_interpreter_and_stays_enabled(service: RuntimeService, env_python: str):
    default_id = DEFAULT_RUNTIME.runtime_id
    with pytest.raises(InvalidRequest, match="server's own interpreter"):
        service.update(OPERATOR, default_id, RuntimeFields(python=env_python))
    with pytest.raises(InvalidRequest, match="cannot be disabled"):
        service.update(OPERATOR, default_id, RuntimeFields(disabled=True))
    with pytest.raises(InvalidRequest, match="cannot be unregistered"):
        service.unregister(OPERATOR, default_id)
    limited = service.update(OPERATOR, default_id, RuntimeFields(max_memory=512, max_memory_unit="m"))
    assert limited.memory_bytes == 512 * 1024**2 and limited.is_default


def test_unregister_and_restore(service: RuntimeService, env_python: str):
    geo = service.register(OPERATOR, RuntimeFields(name="Geo", python=env_python))
    service.unregister(OPERATOR, geo.runtime_id)
    assert not (service.kernels / geo.kernel_name).exists()
    with pytest.raises(RuntimeNotFound):
        service.get(geo.runtime_id)
    service.register(OPERATOR, RuntimeFields(name="A", python=env_python))
    service.update(OPERATOR, DEFAULT_RUNTIME.runtime_id, RuntimeFields(name="Renamed", max_cpu=3))
    restored = service.restore(OPERATOR)
    assert [r.runtime_id for r in service.list()] == [DEFAULT_RUNTIME.runtime_id]
    assert (restored.name, restored.max_cpu, restored.is_default) == ("Python 3 Standard", 0, True)
    assert not any(service.kernels.iterdir())


def test_install_kernelspecs_rewrites_missing_ones(service: RuntimeService, env_python: str):
    geo = service.register(OPERATOR, RuntimeFields(name="Geo", python=env_python))
    (service.kernels / geo.kernel_name / "kernel.json").unlink()
    assert service.install_kernelspecs() == 1
    assert kernel_json(service, geo)["display_name"] == "Geo"


# -- validate / manifest ----------------------------------------------------------------------------


def test_validate_reports_each_runtime(service: RuntimeService, env_python: str, tmp_path: Path):
    good = service.register(OPERATOR, RuntimeFields(name="Good", python=env_python))
    bad_python = executable(tmp_path / "bare" / "bin" / "python")
    bad = service.register(OPERATOR, RuntimeFields(name="Bare", python=bad_python))
    checks = {c.runtime.name: c for c in service.validate()}
    assert checks["Python 3 Standard"].ok and checks["Good"].ok and checks["Good"].python == env_python
    assert not checks["Bare"].ok and "cannot import ipykernel" in checks["Bare"].error
    (service.kernels / good.kernel_name / "kernel.json").unlink()
    assert "kernelspec" in {c.runtime.name: c for c in service.validate()}["Good"].error
    assert bad.runtime_id


def test_check_of_one_runtime_probes_that_one_for_an_admin(service: RuntimeService, tmp_path: Path):
    python = executable(tmp_path / "bare" / "bin" / "python")
    bare = service.register(OPERATOR, RuntimeFields(name="Bare", python=python))
    [check] = service.check(ADMIN, bare.runtime_id)
    assert check.runtime == bare and not check.ok and "cannot import ipykernel" in check.error
    assert [c.runtime.name for c in service.check(ADMIN)] == ["Python 3 Standard", "Bare"]
    with pytest.raises(RuntimeNotFound):
        service.check(ADMIN, "f" * 32)
    with pytest.raises(PermissionDenied):
        service.check(ALICE, bare.runtime_id)


def test_manifest_is_in_the_arcgis_shape_and_cached(service: RuntimeService, env_python: str, environments):
    geo = service.register(OPERATOR, RuntimeFields(name="Geo", python=env_python))
    libraries = service.manifest(OPERATOR, geo.runtime_id)
    assert [lib["name"] for lib in libraries] == ["numpy", "Zed"]
    assert libraries[0] == {
        "name": "numpy",
        "version": "2.0",
        "build_string": "",
        "dist_name": "numpy-2.0",
        "channel": "pypi",
        "platform": None,
        "base_url": None,
        "build_number": 0,
    }
    assert {(lib["name"], lib["version"]) for lib in libraries} == {("numpy", "2.0"), ("Zed", "1")}
    service.manifest(OPERATOR, geo.runtime_id)
    assert environments.library_calls == 1
    service.clock.advance(1)
    service.update(OPERATOR, geo.runtime_id, RuntimeFields(max_cpu=1))  # a change may be a new environment
    service.manifest(OPERATOR, geo.runtime_id)
    assert environments.library_calls == 2


def test_manifest_of_a_broken_environment_is_a_clear_error(service: RuntimeService, tmp_path: Path):
    gone = service.register(
        OPERATOR, RuntimeFields(name="Gone", python=executable(tmp_path / "gone" / "python"))
    )
    with pytest.raises(InvalidRequest, match="Cannot read the libraries of runtime 'Gone'"):
        service.manifest(OPERATOR, gone.runtime_id)


# -- choosing a job's runtime -----------------------------------------------------------------------


def notebook(runtime_name: object = None) -> bytes:
    metadata = {} if runtime_name is None else {"esriNotebookRuntime": runtime_name}
    return json.dumps({"cells": [], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}).encode()


def test_choose_explicit_else_the_notebooks_else_the_default(service: RuntimeService, env_python: str):
    geo = service.register(OPERATOR, RuntimeFields(name="Geo", python=env_python))
    assert service.choose(ALICE, geo.runtime_id, notebook()) == geo
    assert service.choose(ALICE, "", notebook()).is_default
    assert (
        service.choose(ALICE, "", notebook({"notebookRuntimeName": "geo", "notebookRuntimeVersion": "1"}))
        == geo
    )
    assert service.choose(ALICE, "", notebook("Geo")) == geo
    assert service.choose(ALICE, "", notebook("ArcGIS Notebook Python 3 Standard")).is_default
    assert service.choose(ALICE, "", b"not json").is_default


def test_choose_rejects_unknown_disabled_and_unprivileged(service: RuntimeService, env_python: str):
    with pytest.raises(UnknownRuntimeId) as unknown:
        service.choose(ALICE, "no-such-runtime")
    assert isinstance(unknown.value, NotFound) and unknown.value.code == 400
    off = service.register(OPERATOR, RuntimeFields(name="Off", python=env_python, disabled=True))
    with pytest.raises(RuntimeDisabled, match="Runtime 'Off' .* is disabled"):
        service.choose(ALICE, off.runtime_id)
    with pytest.raises(RuntimeDisabled):
        service.choose(ALICE, "", notebook("Off"))
    advanced = service.register(
        OPERATOR, RuntimeFields(name="Adv", python=env_python, requires_advanced_privileges=True)
    )
    with pytest.raises(PermissionDenied) as denied:
        service.choose(ALICE, advanced.runtime_id)
    assert "premium:publisher:createAdvancedNotebooks" in denied.value.details[0]
    assert service.choose(ADMIN, advanced.runtime_id) == advanced


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (notebook({"notebookRuntimeName": " Geo ", "notebookRuntimeVersion": "11.0"}), "Geo"),
        (notebook("Geo"), "Geo"),
        (notebook(42), ""),
        (notebook(), ""),
        (b"[1]", ""),
        (b"", ""),
    ],
)
def test_runtime_name_of(data: bytes, name: str):
    assert runtime_name_of(data) == name


# -- start method and preload -----------------------------------------------------------------------


def test_the_default_starts_by_fork_with_no_preload(service: RuntimeService):
    default = service.default()
    assert (default.preload, default.start_method, default.start_status) == ((), "fork", None)


def test_register_takes_preload_and_start_method(service: RuntimeService, env_python: str):
    spec = service.register(
        OPERATOR,
        RuntimeFields(
            name="Geo",
            python=env_python,
            preload=(" pandas", "numpy", "os.path", "pandas", "numpy "),
            start_method=" Spawn ",
        ),
    )
    assert spec.preload == ("pandas", "numpy", "os.path")  # stripped, duplicates dropped, order kept
    assert spec.start_method == "spawn" and spec.start_status is None
    assert service.get(spec.runtime_id) == spec
    plain = service.register(OPERATOR, RuntimeFields(name="Plain", python=env_python))
    assert (plain.preload, plain.start_method) == ((), "fork")
    many = tuple(f"m{i}" for i in range(32))
    assert (
        service.register(OPERATOR, RuntimeFields(name="Many", python=env_python, preload=many)).preload
        == many
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (RuntimeFields(preload=("",)), "'' is not a Python module name"),
        (RuntimeFields(preload=(".pandas",)), "'.pandas' is not a Python module name"),
        (RuntimeFields(preload=("pandas.",)), "'pandas.' is not a Python module name"),
        (RuntimeFields(preload=("os..path",)), "'os..path' is not a Python module name"),
        (RuntimeFields(preload=("pandas numpy",)), "'pandas numpy' is not a Python module name"),
        (RuntimeFields(preload=("numpy", "1abc")), "'1abc' is not a Python module name"),
        (RuntimeFields(preload=("my-module",)), "'my-module' is not a Python module name"),
        (RuntimeFields(preload=("os; import sys",)), "is not a Python module name"),
        (RuntimeFields(preload=("class",)), "'class' is not a Python module name"),
        (RuntimeFields(preload=tuple(f"m{i}" for i in range(33))), "33 modules \\(at most 32\\)"),
        (
            RuntimeFields(start_method="forkserver"),
            "'startMethod': 'forkserver' \\(expected one of fork, spawn\\)",
        ),
        (RuntimeFields(start_method=""), "'startMethod'"),
    ],
)
def test_bad_preload_or_start_method_is_refused(service: RuntimeService, env_python: str, fields, message):
    with pytest.raises(InvalidRequest, match=message):
        service.register(OPERATOR, RuntimeFields(**{**fields.__dict__, "name": "X", "python": env_python}))
    assert len(service.list()) == 1
    geo = service.register(OPERATOR, RuntimeFields(name="Geo", python=env_python, preload=("pandas",)))
    with pytest.raises(InvalidRequest, match=message):
        service.update(OPERATOR, geo.runtime_id, fields)
    assert service.get(geo.runtime_id) == geo


def test_update_of_preload_or_start_method_forgets_the_start_status(service: RuntimeService, env_python: str):
    geo = service.register(OPERATOR, RuntimeFields(name="Geo", python=env_python, preload=("pandas",)))
    service.clock.advance(5)
    service.record_start_status(geo.runtime_id, "fork")
    ready = service.get(geo.runtime_id).start_status
    kept = service.update(OPERATOR, geo.runtime_id, RuntimeFields(max_cpu=2, preload=("pandas",)))
    assert kept.start_status == ready and service.get(geo.runtime_id).start_status == ready  # same start
    assert service.update(OPERATOR, geo.runtime_id, RuntimeFields(start_method="FORK")).start_status == ready
    changed = service.update(OPERATOR, geo.runtime_id, RuntimeFields(preload=("pandas", "numpy")))
    assert changed.preload == ("pandas", "numpy") and changed.start_status is None
    assert service.get(geo.runtime_id) == changed and service.get(geo.runtime_id).max_cpu == 2
    service.record_start_status(geo.runtime_id, "fork")
    spawned = service.update(OPERATOR, geo.runtime_id, RuntimeFields(start_method="spawn"))
    assert spawned.start_method == "spawn" and service.get(geo.runtime_id).start_status is None
    assert service.get(geo.runtime_id).preload == ("pandas", "numpy")  # None leaves preload as it is
    service.record_start_status(geo.runtime_id, "spawn")
    cleared = service.update(OPERATOR, geo.runtime_id, RuntimeFields(preload=()))
    assert cleared.preload == () and service.get(geo.runtime_id).start_status is None


def test_restore_puts_the_default_back_to_fork_without_preload(service: RuntimeService):
    default_id = DEFAULT_RUNTIME.runtime_id
    service.update(OPERATOR, default_id, RuntimeFields(preload=("pandas",), start_method="spawn"))
    service.record_start_status(default_id, "spawn")
    restored = service.restore(OPERATOR)
    assert (restored.preload, restored.start_method, restored.start_status) == ((), "fork", None)
    assert service.get(default_id) == restored
    service.record_start_status(default_id, "fork")
    again = service.restore(OPERATOR)  # the way kernels start did not change: the report stays
    assert again.start_status is not None and service.get(default_id).start_status == again.start_status


def test_record_start_status_stores_what_the_supervisor_reports(service: RuntimeService, env_python: str):
    geo = service.register(OPERATOR, RuntimeFields(name="Geo", python=env_python, preload=("nope",)))
    service.clock.advance(250)
    reason = "preload 'nope' cannot be imported: No module named 'nope'"
    status = service.record_start_status(geo.runtime_id, "fallback", reason)
    assert status == StartStatus("fallback", reason, 1_250)
    stored = service.get(geo.runtime_id)
    assert stored.start_status == status and stored.updated == geo.updated  # only the status changed
    assert service.record_start_status(geo.runtime_id, "fork").reason == ""
    assert service.record_start_status(geo.runtime_id, "fallback", "x" * 5000).reason == "x" * 2000
    with pytest.raises(InvalidRequest, match="Invalid start state 'ready'"):
        service.record_start_status(geo.runtime_id, "ready")
    assert service.get(geo.runtime_id).start_status.state == "fallback"
    service.unregister(OPERATOR, geo.runtime_id)
    service.record_start_status(geo.runtime_id, "fork")  # gone meanwhile: nothing to record
    with pytest.raises(RuntimeNotFound):
        service.get(geo.runtime_id)
