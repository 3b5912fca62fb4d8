"""Resource limits of one job's kernel: cgroups where the machine allows, else rlimits.

A job's kernel (and everything it forks) goes into its own cgroup ``nbjobs/<job>-<attempt>``:

- cgroup v2 (a unified hierarchy with the memory controller): ``memory.max``, ``memory.swap.max``,
  ``cpu.max``; an OOM kill shows in ``memory.events``;
- cgroup v1 (separate ``memory`` and ``cpu`` hierarchies, as on this project's CI machines):
  ``memory.limit_in_bytes`` (+ ``memory.memsw.limit_in_bytes`` where swap accounting is on),
  ``cpu.cfs_quota_us``; an OOM kill shows in ``memory.oom_control``;
- neither writable (no root, no delegation): ``RLIMIT_AS`` on the kernel process caps its address
  space, so allocations fail with MemoryError; CPU limits are then advisory.

The group also makes cleanup exact: every process still in it is killed when the job ends, even one
that left the kernel's process group and was re-parented.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    """What one kernel may use; 0 means no limit."""

    memory_bytes: int = 0
    swap_bytes: int = 0
    cpus: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.memory_bytes or self.cpus)


class LimitBackend(Protocol):
    """How limits are enforced on this machine."""

    name: str

    def apply(self, group: str, pid: int, limits: Limits) -> None:
        """Put ``pid`` (and its future children) under ``limits``."""

    def oom_killed(self, group: str) -> bool:
        """True when the group's memory limit killed a process."""

    def release(self, group: str) -> None:
        """Kill whatever is left in the group and remove it."""


class RlimitBackend:
    """Address-space limit on the kernel process; CPU limits are advisory."""

    name = "rlimit"

    def apply(self, group: str, pid: int, limits: Limits) -> None:
        if limits.memory_bytes:
            total = limits.memory_bytes + limits.swap_bytes
            resource.prlimit(pid, resource.RLIMIT_AS, (total, total))

    def oom_killed(self, group: str) -> bool:
        return False  # an exhausted address space surfaces as MemoryError in the cell

    def release(self, group: str) -> None:
        pass


class CgroupV1Backend:
    """cgroup v1: one group per job in the memory and cpu hierarchies."""

    name = "cgroup-v1"

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.memory = root / "memory" / "nbjobs"
        self.cpu = root / "cpu" / "nbjobs"

    def apply(self, group: str, pid: int, limits: Limits) -> None:
        if limits.memory_bytes:
            mem = self.memory / group
            mem.mkdir(parents=True, exist_ok=True)
            (mem / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            memsw = mem / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                memsw.write_text(str(limits.memory_bytes + limits.swap_bytes))
            else:  # no swap accounting: keep the job out of swap instead
                with contextlib.suppress(OSError):
                    (mem / "memory.swappiness").write_text("0")
            (mem / "cgroup.procs").write_text(str(pid))
        if limits.cpus:
            cpu = self.cpu / group
            cpu.mkdir(parents=True, exist_ok=True)
            (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(max(int(limits.cpus * CPU_PERIOD_US), 1000)))
            (cpu / "cgroup.procs").write_text(str(pid))

    def oom_killed(self, group: str) -> bool:
        control = self.memory / group / "memory.oom_control"
        try:
            fields = dict(line.split() for line in control.read_text().splitlines() if " " in line)
        except OSError:
            return False
        if "oom_kill" in fields:
            return int(fields["oom_kill"]) > 0
        failcnt = self.memory / group / "memory.failcnt"  # older kernels: the limit was hit
        return failcnt.exists() and int(failcnt.read_text() or 0) > 0

    def release(self, group: str) -> None:
        for base in (self.memory, self.cpu):
            _kill_and_remove(base / group)


class CgroupV2Backend:
    """cgroup v2: one group per job under ``nbjobs`` with memory and cpu delegated to it."""

    name = "cgroup-v2"

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.base = root / "nbjobs"

    def _prepare(self) -> None:
        if not self.base.exists():
            self.base.mkdir()
        (self.base / "cgroup.subtree_control").write_text("+memory +cpu")

    def apply(self, group: str, pid: int, limits: Limits) -> None:
        self._prepare()
        path = self.base / group
        path.mkdir(exist_ok=True)
        if limits.memory_bytes:
            (path / "memory.max").write_text(str(limits.memory_bytes))
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text(str(limits.swap_bytes))
        if limits.cpus:
            (path / "cpu.max").write_text(f"{max(int(limits.cpus * CPU_PERIOD_US), 1000)} {CPU_PERIOD_US}")
        (path / "cgroup.procs").write_text(str(pid))

    def oom_killed(self, group: str) -> bool:
        try:
            lines = (self.base / group / "memory.events").read_text().splitlines()
            events = dict(line.split() for line in lines)
        except OSError:
            return False
        return int(events.get("oom_kill", 0)) > 0

    def release(self, group: str) -> None:
        _kill_and_remove(self.base / group)


def _kill_and_remove(path: Path) -> None:
    if not path.exists():
        return
    for _ in range(50):
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.02)  # the killed processes are still exiting
    log.warning("could not remove cgroup %s", path)


def detect_backend(root: Path = CGROUP_ROOT) -> LimitBackend:
    """The strongest mechanism this machine lets nbjobs use (probed by writing, not guessed)."""
    controllers = root / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        v2 = CgroupV2Backend(root)
        if _probe(v2._prepare):
            return v2
    if (root / "memory").is_dir() and (root / "cpu").is_dir():
        v1 = CgroupV1Backend(root)
        if _probe(lambda: _probe_v1(v1)):
            return v1
    return RlimitBackend()


def _probe_v1(backend: CgroupV1Backend) -> None:
    for base in (backend.memory, backend.cpu):
        base.mkdir(parents=True, exist_ok=True)
        probe = base / f"probe-{os.getpid()}"
        probe.mkdir(exist_ok=True)
        probe.rmdir()


def _probe(action: Callable[[], object]) -> bool:
    try:
        action()
    except OSError:
        return False
    return True


def backend_named(name: str) -> LimitBackend:
    """The backend a runner should use, as the server detected it (runners don't probe again)."""
    return {"cgroup-v2": CgroupV2Backend, "cgroup-v1": CgroupV1Backend, "rlimit": RlimitBackend}[name]()
