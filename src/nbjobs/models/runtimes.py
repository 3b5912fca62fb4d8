"""Runtimes: where a notebook runs (the identity a job records) and what it may use (the registered spec)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Runtime:
    """Where a notebook runs. Issue-4 limits hang off this object."""

    runtime_id: str
    name: str
    version: str
    kernel_name: str = "python3"


_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def to_bytes(amount: float, unit: str) -> int:
    """ArcGIS memory amounts (``maxMemory`` + ``maxMemoryUnit`` in b|k|m|g) as bytes."""
    return int(amount * _UNITS[unit.lower()])


START_METHODS = ("fork", "spawn")  # how a runtime's kernels start; "fork" is the default
START_STATES = ("fork", "spawn", "fallback")  # what StartStatus.state may say
MAX_PRELOAD = 32  # modules a runtime may preload


@dataclass(frozen=True)
class StartStatus:
    """How a runtime's kernels actually start, as the execution side last reported it.

    ``state`` is "fork" (the pre-imported template process is ready), "spawn" (the runtime asks for
    spawn: a stock ipykernel process per kernel) or "fallback" (fork was asked for but refused; ``reason``
    says why, e.g. a preload that fails to import or starts a thread). ``updated`` is epoch ms."""

    state: str
    reason: str = ""
    updated: int = 0


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime as registered: where a notebook runs and what it may use. 0 means "no limit"."""

    runtime_id: str
    name: str
    version: str
    kernel_name: str
    python: str = ""  # the interpreter of the runtime's environment; "" = the server's own
    max_cpu: float = 0.0
    max_memory: float = 0.0
    max_memory_unit: str = "g"
    max_swap_memory: float = 0.0
    max_swap_memory_unit: str = "g"
    max_wall_minutes: float = 0.0  # 0 = the server's maxExecuteNotebookTimeMinutes
    max_output_bytes: int = 0  # per notebook; 0 = the server default
    requires_advanced_privileges: bool = False
    disabled: bool = False
    is_default: bool = False
    created: int = 0
    updated: int = 0
    # Modules a fork template imports once, e.g. ("pandas", "numpy"); only used with start_method "fork".
    preload: tuple[str, ...] = ()
    # "fork": kernels forked from a pre-imported template process; "spawn": a stock ipykernel process each.
    start_method: str = "fork"
    start_status: StartStatus | None = None  # as the execution side reported it; None = not reported yet

    @property
    def memory_bytes(self) -> int:
        return to_bytes(self.max_memory, self.max_memory_unit) if self.max_memory > 0 else 0

    @property
    def swap_bytes(self) -> int:
        return to_bytes(self.max_swap_memory, self.max_swap_memory_unit) if self.max_swap_memory > 0 else 0

    @property
    def identity(self) -> Runtime:
        """What a job records of its runtime."""
        return Runtime(self.runtime_id, self.name, self.version, self.kernel_name)


DEFAULT_RUNTIME = Runtime(
    runtime_id="a1b2c3d4e5f60718293a4b5c6d7e8f90",
    name="Python 3 Standard",
    version="11.0",
    kernel_name="python3",
)
