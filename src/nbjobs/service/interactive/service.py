"""Interactive notebooks, the use cases: open, list, close, save back, cull, and the containers view.

Who may do what (docs/interactive.md): a user opens notebook items they can see, into a Jupyter
server of their own; only that user reaches the server through the proxy (an administrator lists,
closes and terminates anyone's, but does not enter another user's server: that would run code as
them). Another user's notebook or container answers exactly like an unknown one.

Every step works from any API server: the server's address and token are in the store; saving reads
the notebook through Jupyter's contents API; stopping is a status the hosting node carries out (at
once when this process hosts it).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nbjobs.clock import Clock
from nbjobs.errors import (
    ContainerLimitReached,
    ContainerNotFound,
    InvalidNotebook,
    InvalidRequest,
    ItemNotFound,
    NbJobsError,
    NotebookNotFound,
    StoreError,
)
from nbjobs.execution.lab.client import LabClient, LabUnreachable
from nbjobs.execution.lab.host import LabHost, lab_client, notebook_url
from nbjobs.execution.lab.server import process_usage, tail
from nbjobs.execution.notebook_io import read_notebook
from nbjobs.models.accounts import Principal, User
from nbjobs.models.interactive import LIVE_CONTAINER, Container, ContainerStatus, OpenNotebook
from nbjobs.models.jobs import Job, JobInputs, JobType
from nbjobs.models.stores import ContainerStore
from nbjobs.service.authz import CREATE_NOTEBOOKS, may_see, require_privilege
from nbjobs.service.content.items import NOTEBOOK_TYPE, ItemFields, ItemService
from nbjobs.service.jobs.service import JobService
from nbjobs.service.runtimes.registry import RuntimeService
from nbjobs.service.system.config import ConfigService
from nbjobs.settings import Settings

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
TOUCH_EVERY_MS = 30_000  # proxied traffic is written as activity at most this often per container
SaveVersion = Callable[[Principal, str, bytes], object]  # a new version of an item (snapshots kept)
EMPTY_NOTEBOOK = {
    "cells": [],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


class SaveFailed(NbJobsError):
    """The notebook could not be saved to its item."""

    code = 409


@dataclass(frozen=True)
class Limits:
    """The stored configuration this service reads (configuration/update may change it)."""

    max_containers: Callable[[], int]
    idle_minutes: Callable[[], int]  # idleNotebookThreshold
    empty_minutes: Callable[[], int]  # containerCreatedThreshold


def lab_limits(config: ConfigService) -> Limits:
    """The limits as the stored configuration has them now."""
    return Limits(
        max_containers=lambda: int(config.current()["maxContainersPerNode"]),
        idle_minutes=lambda: int(config.current()["idleNotebookThreshold"]),
        empty_minutes=lambda: int(config.current()["containerCreatedThreshold"]),
    )


class InteractiveService:
    def __init__(
        self,
        containers: ContainerStore,
        jobs: JobService,
        items: ItemService,
        runtimes: RuntimeService,
        settings: Settings,
        clock: Clock,
        *,
        save_version: SaveVersion,
        limits: Limits,
        host: LabHost | None = None,
    ) -> None:
        self.containers = containers
        self.jobs = jobs
        self.items = items
        self.runtimes = runtimes
        self.settings = settings
        self.clock = clock
        self.save_version = save_version
        self.limits = limits
        self.host = host  # this process's container host (embedded mode), else None (broker mode)
        self._touched: dict[str, int] = {}
        self._touch_lock = threading.Lock()

    # -- openNotebook -----------------------------------------------------------------------------------
    def open(self, user: User, item_id: str, *, runtime_id: str = "", template: str = "") -> Job:
        """Submit an openNotebook job for ``item_id`` (or for a new item made from ``template``, a
        notebook's JSON, or an empty notebook when neither is given)."""
        require_privilege(user, CREATE_NOTEBOOKS)
        who = user.principal()
        if item_id:
            item, notebook = self.items.data(who, item_id)
            if item.owner != user.username:  # a notebook opens in its owner's own server only
                raise ItemNotFound(item_id)
            if item.type != NOTEBOOK_TYPE:
                raise InvalidRequest(
                    f"Item '{item_id}' is a {item.type}, not a notebook: it cannot be opened."
                )
        else:
            notebook = self._template(template)
            title = _title_of(notebook) or "Untitled notebook"
            item = self.items.add(
                who, user.username, notebook, type=NOTEBOOK_TYPE, fields=ItemFields(title=title)
            )
            item_id = item.item_id
        runtime = self.runtimes.choose(user, runtime_id, notebook)
        if self.host is not None and self.containers.live_for(user.username, runtime.runtime_id) is None:
            limit = self.limits.max_containers()
            if self.containers.count_live(node=self.host.node) >= limit:
                raise ContainerLimitReached(
                    f"The notebook server runs {limit} notebook containers already (maxContainersPerNode): "
                    "close a notebook, or ask an administrator to raise the limit."
                )
        return self.jobs.submit(
            who, notebook, inputs=JobInputs(item_id=item_id), job_type=JobType.OPEN_NOTEBOOK,
            runtime=runtime.identity,
        )  # fmt: skip

    def _template(self, template: str) -> bytes:
        if not template:
            return json.dumps(EMPTY_NOTEBOOK).encode()
        data = template.encode()
        try:
            read_notebook(data)
        except Exception as exc:  # nbformat's own errors: any means "not a notebook"
            raise InvalidNotebook(f"templateNotebook is not a valid notebook: {exc}") from None
        return data

    # -- the notebooks resource ---------------------------------------------------------------------------
    def notebooks(self, who: User, *, start: int = 1, num: int = 10) -> tuple[int, list[OpenNotebook]]:
        """Open notebooks the caller may see (an admin: everyone's), paged from 1 as ArcGIS pages."""
        owner = None if who.is_admin else who.username
        total = self.containers.count_notebooks(username=owner)
        return total, self.containers.notebooks(username=owner, limit=num, offset=max(0, start - 1))

    def notebook(self, who: User, notebook_id: str) -> OpenNotebook:
        found = self.containers.get_notebook(notebook_id)
        if found is None or not found.is_open or not may_see(who.principal(), found.username):
            raise NotebookNotFound(notebook_id)
        return found

    def notebook_view(self, notebook: OpenNotebook) -> dict[str, Any]:
        return {
            "itemId": notebook.item_id,
            "notebookUrl": notebook_url(notebook.container_id, notebook.item_id),
            "dateLastActivity": str(notebook.last_activity),
            "id": notebook.notebook_id,
            "containerId": notebook.container_id,
            "username": notebook.username,
        }

    def close(self, who: User, notebook_id: str, *, reason: str = "closed") -> None:
        """Save the notebook to its item, end its kernel, and stop the server if it was the last open."""
        notebook = self.notebook(who, notebook_id)
        container = self.containers.get(notebook.container_id)
        if container is not None and container.status == ContainerStatus.RUNNING:
            self._save_from_server(container, notebook)
            try:
                self._client(container).end_sessions_of(notebook.path)
            except LabUnreachable as exc:
                log.warning("closing %s: %s", notebook_id, exc)
        if not self.containers.close_notebook(notebook_id, self.clock(), reason):
            raise NotebookNotFound(notebook_id)  # closed meanwhile by someone else
        if container is not None and not self.containers.count_notebooks(container_id=container.container_id):
            self._request_stop(container, "The last notebook was closed.")

    def _save_from_server(self, container: Container, notebook: OpenNotebook) -> bool:
        """Write what the server holds of the notebook to its item (when it changed)."""
        try:
            data = self._client(container).get_notebook(notebook.path)
        except LabUnreachable as exc:
            log.warning("could not read %s from its server to save it: %s", notebook.notebook_id, exc)
            return False
        try:
            return self.save(notebook.username, notebook.item_id, data)
        except NbJobsError as exc:
            log.warning(
                "could not save notebook %s to item %s: %s", notebook.notebook_id, notebook.item_id, exc
            )
            return False

    def save(self, username: str, item_id: str, data: bytes) -> bool:
        """A new version of the item (snapshots kept) unless it holds this notebook already. Raises
        SaveFailed with the reason (item deleted, too large, not a notebook)."""
        who = Principal(username, is_admin=False)
        try:
            _, current = self.items.data(who, item_id)
        except NbJobsError as exc:
            raise SaveFailed(f"The notebook could not be saved to its item: {exc.message}") from None
        if _same_notebook(current, data):
            return False
        try:
            self.save_version(who, item_id, data)
        except NbJobsError as exc:
            raise SaveFailed(f"The notebook could not be saved to its item: {exc.message}") from None
        return True

    # -- the proxy's questions --------------------------------------------------------------------------
    def reachable(self, who: User, container_id: str) -> Container:
        """The running container the proxy may forward ``who`` to: their own only."""
        found = self.containers.get(container_id)
        if found is None or found.username != who.username or found.status != ContainerStatus.RUNNING:
            raise ContainerNotFound(container_id)
        return found

    def open_item_at(self, container: Container, path: str) -> OpenNotebook | None:
        """The open notebook whose file is ``path`` in the container, if any (a save of it is saved back)."""
        item_id = path[: -len(".ipynb")] if path.endswith(".ipynb") and "/" not in path else ""
        return self.containers.open_notebook_of(container.container_id, item_id) if item_id else None

    def touch(self, container_id: str) -> None:
        """Proxied traffic: the container is in use (written at most every TOUCH_EVERY_MS)."""
        now = self.clock()
        with self._touch_lock:
            if now - self._touched.get(container_id, 0) < TOUCH_EVERY_MS:
                return
            self._touched[container_id] = now
        self.containers.touch(container_id, now)

    # -- containers (system/containers, deployments) ------------------------------------------------------
    def container_list(self, who: User) -> list[Container]:
        owner = None if who.is_admin else who.username
        return self.containers.list(username=owner, statuses=LIVE_CONTAINER)

    def container(self, who: User, container_id: str) -> Container:
        found = self.containers.get(container_id)
        if found is None or not found.live or not may_see(who.principal(), found.username):
            raise ContainerNotFound(container_id)
        return found

    def container_view(self, container: Container) -> dict[str, Any]:
        return {
            "id": container.container_id,
            "containerId": container.container_id,
            "username": container.username,
            "notebookRuntimeId": container.runtime_id,
            "status": str(container.status),
            "machine": container.node,
            "created": container.created,
            "dateLastActivity": str(container.last_activity),
            "numberOfNotebooks": self.containers.count_notebooks(container_id=container.container_id),
        }

    def sessions(self, who: User, container_id: str) -> list[dict[str, Any]]:
        container = self.container(who, container_id)
        if container.status != ContainerStatus.RUNNING:
            return []
        try:
            return self._client(container).sessions()
        except LabUnreachable:
            return []

    def container_notebooks(self, who: User, container_id: str) -> list[OpenNotebook]:
        container = self.container(who, container_id)
        return self.containers.notebooks(container_id=container.container_id)

    def logs(self, who: User, container_id: str, lines: int) -> list[str]:
        """The last ``lines`` of the server's log (on this node only: other nodes' logs stay there)."""
        container = self.container(who, container_id)
        if self.host is None or container.node != self.host.node:
            return []
        return tail(self.host.state_dir(container_id), min(max(lines, 0), 10_000))

    def statistics(self, who: User, container_id: str) -> dict[str, Any]:
        """CPU and memory of the server's process tree (its kernels included), measured on this node."""
        container = self.container(who, container_id)
        view: dict[str, Any] = {"containerId": container_id, "numberOfNotebooks":
                                self.containers.count_notebooks(container_id=container_id)}  # fmt: skip
        if self.host is None or container.node != self.host.node or not container.pid:
            return view
        return {**view, **process_usage(container.pid, container.pid_started)}

    def terminate(self, who: User, container_id: str) -> None:
        """Stop a container, saving its open notebooks first."""
        container = self.container(who, container_id)
        self._stop_saving(container, "The container was terminated.")

    # -- background: culling and stopping ----------------------------------------------------------------
    def cull(self) -> int:
        """Stop idle servers (no proxied traffic and no busy kernel for idleNotebookThreshold minutes)
        and servers with nothing open for containerCreatedThreshold minutes; returns how many."""
        now = self.clock()
        idle_ms = self.limits.idle_minutes() * MINUTE_MS
        empty_ms = self.limits.empty_minutes() * MINUTE_MS
        stopped = 0
        for container in self.containers.list(statuses={ContainerStatus.RUNNING}):
            idle_for = now - container.last_activity
            if idle_for >= idle_ms:
                self._stop_saving(
                    container, f"Idle for {idle_for // MINUTE_MS} minutes (idleNotebookThreshold)."
                )
                stopped += 1
            elif idle_for >= empty_ms and not self.containers.count_notebooks(
                container_id=container.container_id
            ):
                self._request_stop(container, "No notebook open (containerCreatedThreshold).")
                stopped += 1
        return stopped

    def save_and_stop_hosted(self) -> int:
        """At shutdown (SIGTERM): save the open notebooks of the servers this process hosts, then stop
        them. Returns how many notebooks were saved."""
        if self.host is None or not self.host.running():
            return 0  # nothing hosted here: no store access at all (the store may be gone already)
        saved = 0
        try:
            for container in self.containers.list(node=self.host.node, statuses={ContainerStatus.RUNNING}):
                if container.container_id not in self.host.running():
                    continue
                for notebook in self.containers.notebooks(container_id=container.container_id):
                    saved += self._save_from_server(container, notebook)
        except StoreError as exc:  # stopping goes on: the servers are stopped below all the same
            log.warning("could not save the open notebooks before stopping: %s", exc)
        self.host.close()
        return saved

    def _stop_saving(self, container: Container, reason: str) -> None:
        if container.status == ContainerStatus.RUNNING:
            for notebook in self.containers.notebooks(container_id=container.container_id):
                self._save_from_server(container, notebook)
        self.containers.close_notebooks_of(container.container_id, self.clock(), reason)
        self._request_stop(container, reason)

    def _request_stop(self, container: Container, reason: str) -> None:
        stopping = self.containers.update(
            container.container_id,
            expected={ContainerStatus.STARTING, ContainerStatus.RUNNING},
            status=ContainerStatus.STOPPING,
            reason=reason,
        )
        if stopping is not None and self.host is not None:
            self.host.request_stop(container.container_id, reason)

    def _client(self, container: Container) -> LabClient:
        return lab_client(container, self.settings.server.context)


def _title_of(notebook: bytes) -> str:
    try:
        title = json.loads(notebook).get("metadata", {}).get("title", "")
    except (ValueError, AttributeError):
        return ""
    return title if isinstance(title, str) else ""


def _same_notebook(a: bytes, b: bytes) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return a == b


__all__ = ["InteractiveService", "Limits", "SaveFailed", "lab_limits"]
