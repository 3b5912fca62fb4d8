"""Interactive notebooks: a user's Jupyter server ("container", as ArcGIS calls it) and the notebooks
open in it (docs/interactive.md)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum


class ContainerStatus(StrEnum):
    STARTING = "STARTING"  # the process is starting; not yet answering
    RUNNING = "RUNNING"  # answering on ``address``
    STOPPING = "STOPPING"  # asked to stop (by any API server); the node that runs it stops it
    STOPPED = "STOPPED"
    FAILED = "FAILED"  # never became ready


LIVE_CONTAINER = frozenset({ContainerStatus.STARTING, ContainerStatus.RUNNING, ContainerStatus.STOPPING})


def new_container_id() -> str:
    return uuid.uuid4().hex[:24]


def new_notebook_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Container:
    """One user's Jupyter server for one runtime, on one node."""

    container_id: str
    username: str
    runtime_id: str
    node: str  # the host prefix of the machine running it (its process lives there)
    status: ContainerStatus
    created: int
    last_activity: int  # epoch ms: proxied traffic, or a kernel seen busy
    address: str = ""  # http://host:port, reachable by the API servers
    token: str = ""  # the Jupyter server's token (never sent to a browser)
    pid: int = 0
    pid_started: float = 0.0  # the process's start time (psutil), so a reused pid is not taken for it
    ended: int = 0
    reason: str = ""  # why it stopped or failed

    @property
    def live(self) -> bool:
        return self.status in LIVE_CONTAINER


@dataclass(frozen=True)
class OpenNotebook:
    """A portal item open in a container: ``path`` is its file in the user's workspace."""

    notebook_id: str
    container_id: str
    item_id: str
    username: str
    path: str
    opened: int
    last_activity: int
    job_id: str = ""  # the openNotebook job that opened it
    closed: int = 0  # epoch ms; 0 while open
    reason: str = ""

    @property
    def is_open(self) -> bool:
        return self.closed == 0
