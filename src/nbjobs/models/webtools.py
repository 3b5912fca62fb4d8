"""Web tools: notebooks published as geoprocessing services, and the calls made to them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbjobs.models.jobs import NO_RETRIES, RetryPolicy

PRIVATE = "private"


ORG = "org"


ACCESS = (PRIVATE, ORG)


@dataclass(frozen=True)
class WebTool:
    """A published notebook. ``params`` is the ``ToolParams.to_json`` form; the snapshot is read apart."""

    service_name: str
    owner: str
    notebook_id: str
    title: str
    task_name: str
    created: int
    modified: int
    description: str = ""
    access: str = PRIVATE
    params: dict[str, Any] = field(default_factory=dict)
    runtime_id: str = ""
    snapshot_id: str = ""
    retry: RetryPolicy = NO_RETRIES  # the retry policy of every job the tool runs


@dataclass(frozen=True)
class WebToolCall:
    """One call of a web tool task: the job it started and the GP inputs as the caller sent them."""

    job_id: str
    service_name: str
    task_name: str
    inputs: dict[str, Any]
    created: int
