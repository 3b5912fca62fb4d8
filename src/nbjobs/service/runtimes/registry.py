"""Runtimes: where a job's kernel runs (a Jupyter kernelspec in a Python environment) and its limits.

The default runtime, "Python 3 Standard", is the server's own interpreter and its ``python3`` kernel.
A runtime registered with another interpreter gets a kernelspec of its own under
``<data_dir>/jupyter/kernels/nbjobs-<id[:12]>``; runners find it because ``<data_dir>/jupyter`` is on
their ``JUPYTER_PATH``. Jobs record the identity of their runtime, so unregistering one never changes
the history.
"""

from __future__ import annotations

import builtins
import dataclasses
import os
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbjobs.clock import Clock
from nbjobs.errors import InvalidRequest, RuntimeDisabled, RuntimeNotFound, UnknownRuntimeId
from nbjobs.models.accounts import User
from nbjobs.models.runtimes import DEFAULT_RUNTIME, START_STATES, RuntimeSpec, StartStatus
from nbjobs.models.stores import RuntimeStore
from nbjobs.service.authz import (
    ADVANCED_NOTEBOOKS,
    RUNTIMES,
    require_admin,
    require_notebook_user,
    require_privilege,
)
from nbjobs.service.runtimes.environments import Environments, executable_problem
from nbjobs.service.runtimes.fields import (
    RuntimeFields,
    _apply_limits,
    _apply_start,
    _clean_name,
    _factory_default,
    _owns_kernel,
    _same_env,
    runtime_name_of,
    start_changed,
)
from nbjobs.service.runtimes.kernelspecs import (
    KERNEL_PREFIX,
    installed_python_kernel,
    jupyter_path,
    kernel_dir,
    remove_kernelspec,
    write_kernelspec,
)

__all__ = ["RuntimeCheck", "RuntimeFields", "RuntimeService", "jupyter_path", "kernel_dir"]

MAX_REASON = 2000  # characters of a start status' reason kept


@dataclass(frozen=True)
class RuntimeCheck:
    """validate()'s answer for one runtime."""

    runtime: RuntimeSpec
    ok: bool
    python: str
    python_version: str = ""
    error: str = ""


@dataclass(frozen=True)
class _Environment:
    python: str
    kernel_name: str


class RuntimeService:
    """Register, change, check and choose runtimes. Every operation a caller asks for takes the calling
    user and asks ``service.authz``: changing runtimes is for administrators, reading them for notebook
    users; the CLI calls as ``authz.OPERATOR`` (the machine's operator). ``find``, ``lookup``,
    ``default``, ``list`` and ``validate`` are the system's own view (composition roots, supervisor)."""

    def __init__(
        self,
        store: RuntimeStore,
        clock: Clock,
        *,
        kernels: Path,
        environments: Environments,
        server_python: str = sys.executable,
    ) -> None:
        self.store = store
        self.clock = clock
        self.kernels = kernels
        self.environments = environments
        self.server_python = server_python
        self._manifests: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------------------
    def read(self, caller: User, runtime_id: str) -> RuntimeSpec:
        """One runtime, for a notebook user."""
        require_notebook_user(caller)
        return self.get(runtime_id)

    def readable(self, caller: User) -> builtins.list[RuntimeSpec]:
        """Every runtime, the default first, for a notebook user."""
        require_notebook_user(caller)
        return self.list()

    def get(self, runtime_id: str) -> RuntimeSpec:
        spec = self.store.get(runtime_id) if runtime_id else None
        if spec is None:
            raise RuntimeNotFound(runtime_id)
        return spec

    def find(self, runtime_id: str) -> RuntimeSpec | None:
        """The runtime with this id, or None (the supervisor's view: a job keeps its recorded identity)."""
        return self.store.get(runtime_id) if runtime_id else None

    def lookup(self, key: str) -> RuntimeSpec:
        """The runtime with this id, else with this name (for people at a command line)."""
        spec = (self.store.get(key) or self.store.get_by_name(key)) if key else None
        if spec is None:
            raise RuntimeNotFound(key)
        return spec

    def default(self) -> RuntimeSpec:
        return next((r for r in self.store.list() if r.is_default), None) or self.ensure_default()

    def list(self) -> list[RuntimeSpec]:
        """Every runtime, the default first."""
        return self.store.list()

    def python_of(self, spec: RuntimeSpec) -> str:
        """The interpreter a runtime's kernel runs in."""
        return spec.python or self.server_python

    # -- start-up -----------------------------------------------------------------------------------
    def ensure_default(self) -> RuntimeSpec:
        """Seed "Python 3 Standard" (the server's interpreter) unless it exists; idempotent."""
        found = self.store.get(DEFAULT_RUNTIME.runtime_id)
        if found is not None:
            return found
        spec = _factory_default(self.clock())
        try:
            self.store.add(spec)
        except InvalidRequest:  # another process seeded it first
            return self.store.get(DEFAULT_RUNTIME.runtime_id) or spec
        return spec

    def install_kernelspecs(self) -> int:
        """(Re)write the kernelspec of every runtime with its own interpreter, e.g. on a fresh node that
        shares the database; returns how many."""
        written = 0
        for spec in self.store.list():
            if _owns_kernel(spec):
                self._write_kernelspec(spec)
                written += 1
        return written

    # -- changing -----------------------------------------------------------------------------------
    def register(self, caller: User, fields: RuntimeFields) -> RuntimeSpec:
        """Add a runtime from ``python`` (an interpreter with ipykernel) or ``image_id`` (an installed
        kernelspec); InvalidRequest names the first bad field."""
        require_admin(caller, RUNTIMES)
        name = _clean_name(fields.name)
        runtime_id = uuid.uuid4().hex
        env = self._environment(fields, runtime_id)
        if env is None:
            raise InvalidRequest("Give the runtime's python (an interpreter path) or imageId (a kernelspec).")
        now = self.clock()
        spec = _apply_start(
            _apply_limits(
                RuntimeSpec(
                    runtime_id=runtime_id,
                    name=name,
                    version=(fields.version or DEFAULT_RUNTIME.version).strip(),
                    kernel_name=env.kernel_name,
                    python=env.python,
                    created=now,
                    updated=now,
                ),
                fields,
            ),
            fields,
        )
        if self.store.get_by_name(name) is not None:
            raise InvalidRequest(f"A runtime named '{name}' already exists.")
        if _owns_kernel(spec):
            self._write_kernelspec(spec)
        try:
            self.store.add(spec)
        except InvalidRequest:
            self._remove_kernelspec(spec)
            raise
        return spec

    def update(self, caller: User, runtime_id: str, fields: RuntimeFields) -> RuntimeSpec:
        """Change the given fields of a runtime. The default keeps its interpreter and stays enabled."""
        require_admin(caller, RUNTIMES)
        old = self.get(runtime_id)
        changes: dict[str, Any] = {}
        if fields.name is not None:
            changes["name"] = _clean_name(fields.name)
        if fields.version is not None and fields.version.strip():
            changes["version"] = fields.version.strip()
        same_env = _same_env(old, fields, self.server_python)
        if old.is_default and (fields.python or fields.image_id) and not same_env:
            raise InvalidRequest("The default runtime always runs in the server's own interpreter.")
        if old.is_default and fields.disabled:
            raise InvalidRequest("The default runtime cannot be disabled.")
        env = None if old.is_default or same_env else self._environment(fields, runtime_id)
        if env is not None:
            changes.update(python=env.python, kernel_name=env.kernel_name)
        spec = _apply_start(
            _apply_limits(dataclasses.replace(old, **changes, updated=self.clock()), fields), fields
        )
        self._save(old, spec)
        if _owns_kernel(old) and old.kernel_name != spec.kernel_name:
            self._remove_kernelspec(old)
        if _owns_kernel(spec):
            self._write_kernelspec(spec)
        return spec

    def unregister(self, caller: User, runtime_id: str) -> RuntimeSpec:
        """Forget a runtime (not the default); jobs keep the runtime identity they recorded."""
        require_admin(caller, RUNTIMES)
        spec = self.get(runtime_id)
        if spec.is_default:
            raise InvalidRequest("The default runtime cannot be unregistered.")
        self.store.delete(runtime_id)
        self._remove_kernelspec(spec)
        return spec

    def restore(self, caller: User) -> RuntimeSpec:
        """Back to the factory set: only the default runtime, with its original settings."""
        require_admin(caller, RUNTIMES)
        for spec in self.store.list():
            if not spec.is_default:
                self.unregister(caller, spec.runtime_id)
        current = self.ensure_default()
        factory = dataclasses.replace(_factory_default(current.created), updated=self.clock())
        if not start_changed(current, factory):
            factory = dataclasses.replace(factory, start_status=current.start_status)
        self._save(current, factory)
        return factory

    def record_start_status(self, runtime_id: str, state: str, reason: str = "") -> StartStatus:
        """Store how the runtime's kernels start now (the supervisor's report, no caller): ``state`` is
        "fork", "spawn" or "fallback" (``reason`` says why fork was refused). Only that is written;
        a runtime unregistered meanwhile is left alone."""
        if state not in START_STATES:
            raise InvalidRequest(
                f"Invalid start state {state!r} (expected one of {', '.join(START_STATES)})."
            )
        status = StartStatus(state, reason[:MAX_REASON], self.clock())
        self.store.record_start_status(runtime_id, status)
        return status

    def _save(self, old: RuntimeSpec, new: RuntimeSpec) -> None:
        """Store ``new`` in place of ``old``; the start status reported for ``old`` is forgotten when its
        kernels now start differently (``save`` itself never writes it)."""
        self.store.save(new)
        if start_changed(old, new):
            self.store.record_start_status(new.runtime_id, None)

    # -- environments -------------------------------------------------------------------------------
    def check(self, caller: User, runtime_id: str = "") -> builtins.list[RuntimeCheck]:
        """``validate`` for an administrator (validateRuntimes); with ``runtime_id``, that runtime only
        (RuntimeNotFound if there is none)."""
        require_admin(caller, RUNTIMES)
        if runtime_id:
            return [self._check(self.get(runtime_id))]
        return self.validate()

    def validate(self) -> builtins.list[RuntimeCheck]:
        """For each runtime: does its python exist and import ipykernel (and is its kernelspec there)?"""
        return [self._check(spec) for spec in self.store.list()]

    def _check(self, spec: RuntimeSpec) -> RuntimeCheck:
        python = self.python_of(spec)
        probe = self.environments.probe(python)
        error = probe.error
        if probe.ok and _owns_kernel(spec) and not (self.kernels / spec.kernel_name / "kernel.json").exists():
            error = f"kernelspec '{spec.kernel_name}' is missing from {self.kernels}"
        return RuntimeCheck(spec, not error, python, probe.version, error)

    def manifest(self, caller: User, runtime_id: str) -> builtins.list[dict[str, Any]]:
        """The libraries of the runtime's environment in the ArcGIS manifest shape; cached per runtime."""
        spec = self.read(caller, runtime_id)
        python = self.python_of(spec)
        key = (spec.runtime_id, python, spec.updated)
        with self._lock:
            cached = self._manifests.get(key)
        if cached is not None:
            return cached
        try:
            pairs = self.environments.libraries(python)
        except OSError as exc:
            raise InvalidRequest(f"Cannot read the libraries of runtime '{spec.name}': {exc}") from exc
        libraries = [_library(name, version) for name, version in sorted(pairs, key=lambda p: p[0].lower())]
        with self._lock:
            self._manifests = {k: v for k, v in self._manifests.items() if k[0] != spec.runtime_id}
            self._manifests[key] = libraries
        return libraries

    # -- jobs ---------------------------------------------------------------------------------------
    def choose(self, user: User, runtime_id: str = "", notebook: bytes = b"") -> RuntimeSpec:
        """The runtime a job of ``user`` runs on: ``runtime_id``, else the one the notebook names
        (``metadata.esriNotebookRuntime``) if registered here, else the default. Unknown id:
        UnknownRuntimeId; disabled: RuntimeDisabled; advanced without the privilege: PermissionDenied."""
        if runtime_id:
            spec = self.store.get(runtime_id)
            if spec is None:
                raise UnknownRuntimeId(runtime_id)
        else:
            named = runtime_name_of(notebook)
            spec = (self.store.get_by_name(named) if named else None) or self.default()
        if spec.disabled:
            raise RuntimeDisabled(spec.name, spec.runtime_id)
        if spec.requires_advanced_privileges:
            require_privilege(user, ADVANCED_NOTEBOOKS)
        return spec

    # -- kernelspecs --------------------------------------------------------------------------------
    def _environment(self, fields: RuntimeFields, runtime_id: str) -> _Environment | None:
        if fields.python:
            python = os.path.abspath(fields.python)  # not resolve(): a venv's python is a symlink
            problem = executable_problem(python)
            if problem:
                raise InvalidRequest(f"Invalid python: {problem}.")
            return _Environment(python, KERNEL_PREFIX + runtime_id[:12])
        if fields.image_id:
            return self._installed_kernel(fields.image_id.strip())
        return None

    def _installed_kernel(self, kernel_name: str) -> _Environment:
        python = installed_python_kernel(self.kernels, kernel_name)
        return _Environment(python, kernel_name)

    def _write_kernelspec(self, spec: RuntimeSpec) -> None:
        write_kernelspec(self.kernels, spec)

    def _remove_kernelspec(self, spec: RuntimeSpec) -> None:
        if _owns_kernel(spec):
            remove_kernelspec(self.kernels, spec.kernel_name)


def _library(name: str, version: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "build_string": "",
        "dist_name": f"{name}-{version}",
        "channel": "pypi",
        "platform": None,
        "base_url": None,
        "build_number": 0,
    }
