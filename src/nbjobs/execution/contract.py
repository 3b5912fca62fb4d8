"""What a supervisor is given about a job besides the job: its time limit, its runtime, its credentials."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nbjobs.models.jobs import Job
from nbjobs.models.runtimes import RuntimeSpec


def deadline_minutes(job: Job, server_max: float, spec: RuntimeSpec | None = None) -> float:
    """Whole-run limit: executionTimeoutInMinutes capped by the runtime's and the server's maximum."""
    caps = [server_max]
    if spec is not None and spec.max_wall_minutes > 0:
        caps.append(spec.max_wall_minutes)
    requested = job.inputs.execution_timeout_minutes
    if requested and requested > 0:
        caps.append(requested)
    return min(caps)


RuntimeLookup = Callable[[str], "RuntimeSpec | None"]


@dataclass(frozen=True)
class JobCredentials:
    """What a job's kernel gets to reach this server as the job's owner, and how to take it back."""

    auth: dict[str, Any]  # the NB_AUTH_FILE document ArcGIS notebooks read for GIS("home")
    revoke: Callable[[], None]


CredentialIssuer = Callable[[Job, float], JobCredentials]  # (job, minutes it may run) -> credentials
