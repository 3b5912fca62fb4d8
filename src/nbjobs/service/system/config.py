"""The notebook server's configuration as ArcGIS exposes it, with validated, stored updates.

Settings (environment and flags) give the defaults; ``notebooks/configuration/update`` and
``system/properties/update`` store overrides in the database, so every server of a cluster sees them.
The running server reads the effective values through ``current()`` (cached for a few seconds).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from nbjobs.clock import Clock
from nbjobs.errors import InvalidRequest
from nbjobs.models.accounts import User
from nbjobs.models.stores import ConfigStore
from nbjobs.service.authz import CONFIGURATION, require_admin
from nbjobs.settings import MIN_CLEAN_AGE_HOURS, Settings

MIN_EXECUTE_MINUTES = 15  # ArcGIS: maxExecuteNotebookTimeMinutes has a minimum of 15
_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Property:
    """One configurable property: its type, bounds, and the Settings field giving its default."""

    kind: type
    minimum: float | None = None
    default_from: str = ""
    default: Any = None


# Family B (notebooks/configuration) and family A (system/properties) name some properties differently;
# both names map to the same value here.
PROPERTIES: dict[str, Property] = {
    "maxExecuteNotebookTimeMinutes": Property(
        float, MIN_EXECUTE_MINUTES, "max_execute_notebook_time_minutes"
    ),
    "asyncJobsCleanAgeHours": Property(int, MIN_CLEAN_AGE_HOURS, "async_jobs_clean_age_hours"),
    "webSocketSize": Property(int, 1, default=16),
    "maxSnapshotsPerNotebookItem": Property(int, 0, default=5),
    "allowHiddenFileDownloads": Property(bool, default=False),
    "idleNotebookThreshold": Property(int, 1, default=720),
    "containerCreatedThreshold": Property(int, 1, default=60),
    "maxContainersPerNode": Property(int, 1, default=20),
}
ALIASES = {"asyncJobsCleanupAgeHours": "asyncJobsCleanAgeHours"}
READ_ONLY = {"maxExecuteNotebookContainersPerNode"}  # = NBJOBS_WORKERS, fixed at start


class ConfigService:
    def __init__(self, settings: Settings, store: ConfigStore, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def current(self) -> dict[str, Any]:
        """Every property with its effective value (stored override, else the setting's default)."""
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > _CACHE_SECONDS:
                self._cached = (time.monotonic(), self.store.load())
            stored = self._cached[1]
        values = {name: stored.get(name, self._default(name, prop)) for name, prop in PROPERTIES.items()}
        values["maxExecuteNotebookContainersPerNode"] = self.settings.pool.workers
        return values

    def max_execute_minutes(self) -> float:
        return float(self.current()["maxExecuteNotebookTimeMinutes"])

    def clean_age_hours(self) -> int:
        return int(self.current()["asyncJobsCleanAgeHours"])

    def update(self, caller: User, changes: dict[str, Any], *, replace_all: bool = False) -> dict[str, Any]:
        """Validate and store ``changes``; with ``replace_all`` (family A), absent properties revert."""
        require_admin(caller, CONFIGURATION)
        if not isinstance(changes, dict) or not changes:
            raise InvalidRequest("Give the properties to change as a JSON object.")
        checked: dict[str, Any] = {}
        for raw_name, value in changes.items():
            name = ALIASES.get(raw_name, raw_name)
            if name in READ_ONLY:
                if _same(value, self.current()[name]):
                    continue  # a client sending back what it read: fine
                raise InvalidRequest(f"'{raw_name}' is read-only here: it is NBJOBS_WORKERS, set at start.")
            prop = PROPERTIES.get(name)
            if prop is None:
                raise InvalidRequest(f"Unknown configuration property '{raw_name}'.")
            checked[name] = _coerce(raw_name, value, prop)
        with self._lock:
            stored = {} if replace_all else self.store.load()
            stored.update(checked)
            self.store.replace(stored, self.clock())
            self._cached = None
        return self.current()

    def _default(self, name: str, prop: Property) -> Any:
        return self.settings.value_of(prop.default_from) if prop.default_from else prop.default


def _coerce(name: str, value: Any, prop: Property) -> Any:
    if prop.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise InvalidRequest(f"'{name}' must be true or false.")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(f"'{name}' must be a number.")
    try:
        as_float = float(value)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a number.") from None
    if not math.isfinite(as_float):  # NaN and Infinity: no limit to compute with, and not JSON either
        raise InvalidRequest(f"'{name}' must be a finite number.")
    number = int(as_float) if prop.kind is int else as_float
    if prop.kind is int and as_float != number:
        raise InvalidRequest(f"'{name}' must be a whole number.")
    if prop.minimum is not None and number < prop.minimum:
        raise InvalidRequest(f"'{name}' must be at least {prop.minimum:g}.")
    return number


def _same(value: Any, current: Any) -> bool:
    try:
        return float(value) == float(current)
    except (TypeError, ValueError):
        return False
