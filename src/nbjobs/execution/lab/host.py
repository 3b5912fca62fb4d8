"""The container host: runs ``openNotebook`` jobs on this node and owns the Jupyter servers it starts.

An openNotebook job, claimed like any job, is handed here by the supervisor. The host finds the user's
live server for the runtime (the database allows one) or starts one, puts the item's notebook into it
through its contents API (so it works for a server on any node), records the open notebook and
COMPLETES the job with ``notebookUrl``, ``notebookId`` and ``containerId``. The servers outlive the job.

``tick`` (a housekeeping duty of the process that hosts servers) notices servers that died, carries
out stop requests any API server wrote (status STOPPING), and marks containers whose kernels are busy
as active, so a long computation with no browser attached is not culled. ``recover`` runs at start:
servers an earlier process of this node left running are re-adopted if they still answer, otherwise
stopped (docs/interactive.md: "After a crash").
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from nbjobs.clock import Clock
from nbjobs.errors import ContainerLimitReached, StoreError
from nbjobs.execution.contract import RuntimeLookup
from nbjobs.execution.lab.client import LabClient, LabUnreachable
from nbjobs.execution.lab.server import (
    LabLaunch,
    LabProcess,
    LabStartFailed,
    is_alive,
    lab_python,
    last_line,
    owned_by_a_live_process,
    stop_process,
)
from nbjobs.execution.limits import LimitBackend, Limits, RlimitBackend
from nbjobs.models.interactive import (
    LIVE_CONTAINER,
    Container,
    ContainerStatus,
    OpenNotebook,
    new_container_id,
    new_notebook_id,
)
from nbjobs.models.jobs import RUNNING, Failure, FailureReason, Job, JobStatus, JobUpdate
from nbjobs.models.runtimes import RuntimeSpec
from nbjobs.models.stores import ContainerStore, JobStore
from nbjobs.settings import Settings

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
BUSY = "busy"
RESTARTED = "The notebook server was stopped: nbjobs restarted."


def notebook_path(item_id: str) -> str:
    """An item's file in the user's workspace."""
    return f"{item_id}.ipynb"


def base_url(context: str, container_id: str) -> str:
    return f"/{context}/notebooks/{container_id}/"


def lab_client(container: Container, context: str) -> LabClient:
    """The REST client of a container's server, from any process (its address and token are stored)."""
    return LabClient(container.address, base_url(context, container.container_id), container.token)


def notebook_url(container_id: str, item_id: str) -> str:
    """``results.notebookUrl`` as ArcGIS gives it (relative to the server's context)."""
    return f"/notebooks/{container_id}/notebooks/{notebook_path(item_id)}"


class LabHost:
    def __init__(
        self,
        jobs: JobStore,
        containers: ContainerStore,
        settings: Settings,
        clock: Clock,
        *,
        node: str,
        runtimes: RuntimeLookup,
        max_containers: Callable[[], int] = lambda: 20,
        limits: LimitBackend | None = None,
    ) -> None:
        self.jobs = jobs
        self.containers = containers
        self.settings = settings
        self.clock = clock
        self.node = node
        self.runtimes = runtimes
        self.max_containers = max_containers
        self.limits: LimitBackend = limits or RlimitBackend()
        self._processes: dict[str, LabProcess] = {}  # servers this process started
        self._adopted: dict[str, tuple[int, float]] = {}  # servers an earlier process left: pid, start
        self._lock = threading.Lock()
        self._starting: dict[str, threading.Lock] = {}

    # -- paths ----------------------------------------------------------------------------------------
    def state_dir(self, container_id: str) -> Path:
        return self.settings.store.data_dir / "containers" / container_id

    def workspace(self, username: str) -> Path:
        return self.settings.store.data_dir / "workspaces" / _SAFE.sub("_", username)

    def client(self, container: Container) -> LabClient:
        return lab_client(container, self.settings.server.context)

    # -- the openNotebook job ---------------------------------------------------------------------------
    def run(self, job: Job) -> Job | None:
        """Open the job's notebook for its user; the job's single end write. None if fenced out."""
        try:
            container = self._container_for(job)
            self._progress(job, 90, "Opening the notebook")
            notebook = self._open(job, container)
        except (LabStartFailed, ContainerLimitReached) as exc:
            return self._fail(job, str(exc))
        except LabUnreachable as exc:
            return self._fail(job, f"The notebook server could not open the notebook: {exc}")
        results = {
            "notebookUrl": notebook_url(notebook.container_id, notebook.item_id),
            "notebookId": notebook.notebook_id,
            "containerId": notebook.container_id,
            "itemId": notebook.item_id,
        }
        now = self.clock()
        update = JobUpdate(results=results, progress_percent=100, progress_message="Notebook is open")
        ended = self.jobs.transition(
            job.job_id, JobStatus.COMPLETED, now, attempt=job.attempt, update=update, expected=RUNNING
        )
        if ended is None:  # cancelled meanwhile: the notebook stays open (closeNotebook closes it)
            return self.jobs.get(job.job_id)
        return ended

    def _fail(self, job: Job, message: str) -> Job | None:
        log.warning("openNotebook %s failed: %s", job.job_id, message)
        update = JobUpdate(failure=Failure(FailureReason.NOTEBOOK_SERVER_FAILED, message), results={})
        ended = self.jobs.transition(
            job.job_id, JobStatus.FAILED, self.clock(), attempt=job.attempt, update=update, expected=RUNNING
        )
        return ended or self.jobs.get(job.job_id)

    def _progress(self, job: Job, percent: int, message: str) -> None:
        self.jobs.set_progress(job.job_id, job.attempt, self.clock(), percent, message)

    def _container_for(self, job: Job) -> Container:
        """The user's running server for the job's runtime, started now if there is none."""
        key = f"{job.username}/{job.runtime.runtime_id}"
        with self._lock:
            gate = self._starting.setdefault(key, threading.Lock())
        with gate:
            deadline = time.monotonic() + self.settings.interactive.lab_start_timeout_seconds
            while True:
                found = self.containers.live_for(job.username, job.runtime.runtime_id)
                if found is None:
                    started = self._start(job)
                    if started is not None:
                        return started
                    continue  # another API server's host started one first: use it
                if found.status == ContainerStatus.RUNNING and self._answers(found):
                    return found
                if found.status == ContainerStatus.STOPPING or (
                    found.status == ContainerStatus.RUNNING and not self._answers(found)
                ):
                    self._progress(job, 10, "Waiting for the previous notebook server to stop")
                elif found.status == ContainerStatus.STARTING:
                    self._progress(job, 20, "Waiting for the notebook server to start")
                if time.monotonic() > deadline:
                    raise LabStartFailed("The user's notebook server did not become ready in time.")
                self.jobs.heartbeat(job.job_id, job.attempt, self.clock(), self._lease_ms())
                time.sleep(0.2)

    def _answers(self, container: Container) -> bool:
        try:
            self.client(container).status()
        except LabUnreachable:
            return False
        return True

    def _lease_ms(self) -> int:
        return int(self.settings.execution.lease_seconds * 1000)

    def _start(self, job: Job) -> Container | None:
        limit = self.max_containers()
        if self.containers.count_live(node=self.node) >= limit:
            raise ContainerLimitReached(
                f"This notebook server runs {limit} notebook containers already (maxContainersPerNode). "
                "Close a notebook, or ask an administrator to raise the limit."
            )
        now = self.clock()
        container = Container(
            container_id=new_container_id(),
            username=job.username,
            runtime_id=job.runtime.runtime_id,
            node=self.node,
            status=ContainerStatus.STARTING,
            created=now,
            last_activity=now,
            token=secrets.token_urlsafe(32),
        )
        if not self.containers.add(container):
            return None
        self._progress(job, 10, "Starting the notebook server")
        spec = self.runtimes(job.runtime.runtime_id)
        launch = self._launch(container, spec)
        try:
            proc = LabProcess.start(launch)
        except OSError as exc:
            self._end_container(container.container_id, ContainerStatus.FAILED, f"cannot start: {exc}")
            raise LabStartFailed(f"The notebook server could not be started: {exc}") from None
        with self._lock:
            self._processes[container.container_id] = proc
        self.containers.update(container.container_id, pid=proc.pid, pid_started=proc.started)
        if spec is not None:
            limits = Limits(spec.memory_bytes, spec.swap_bytes, spec.max_cpu)
            if limits:
                self.limits.apply(f"lab-{container.container_id}", proc.pid, limits)

        last_beat = [time.monotonic()]

        def progress(elapsed: float) -> None:
            if time.monotonic() - last_beat[0] > 2.0:
                last_beat[0] = time.monotonic()
                self.jobs.heartbeat(job.job_id, job.attempt, self.clock(), self._lease_ms())
                self._progress(job, min(80, 20 + int(elapsed * 4)), "Starting the notebook server")

        try:
            address = proc.wait_ready(self.settings.interactive.lab_start_timeout_seconds, progress=progress)
        except LabStartFailed as exc:
            with self._lock:
                self._processes.pop(container.container_id, None)
            self._release(container.container_id)
            self._end_container(container.container_id, ContainerStatus.FAILED, str(exc))
            raise
        running = self.containers.update(
            container.container_id,
            expected={ContainerStatus.STARTING},
            status=ContainerStatus.RUNNING,
            address=address,
            last_activity=self.clock(),
        )
        if running is None:  # asked to stop while starting
            self._stop_local(container.container_id, "closed while starting")
            raise LabStartFailed("The notebook server was stopped while it started.")
        log.info("notebook server %s of %s started at %s", container.container_id, job.username, address)
        return running

    def _launch(self, container: Container, spec: RuntimeSpec | None) -> LabLaunch:
        kernel_python = (spec.python if spec is not None and spec.python else "") or sys.executable
        env = dict(self.settings.execution.kernel_env)
        return LabLaunch(
            container_id=container.container_id,
            base_url=base_url(self.settings.server.context, container.container_id),
            workspace=self.workspace(container.username),
            state_dir=self.state_dir(container.container_id),
            kernel_argv=(kernel_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"),
            python=lab_python(self.settings.interactive.lab_python),
            host=self.settings.interactive.lab_host,
            token=container.token,
            env=env,
            os_user=self.settings.execution.kernel_user,
        )

    def _open(self, job: Job, container: Container) -> OpenNotebook:
        item_id = job.inputs.item_id
        already = self.containers.open_notebook_of(container.container_id, item_id)
        if already is not None:
            self.containers.touch(container.container_id, self.clock())
            return already  # open already (another tab, or opened twice): the same notebook
        data = self.jobs.get_blob(job.job_id, "input") or b""
        self.client(container).put_notebook(notebook_path(item_id), data)
        now = self.clock()
        notebook = OpenNotebook(
            notebook_id=new_notebook_id(),
            container_id=container.container_id,
            item_id=item_id,
            username=job.username,
            path=notebook_path(item_id),
            opened=now,
            last_activity=now,
            job_id=job.job_id,
        )
        self.containers.add_notebook(notebook)
        self.containers.touch(container.container_id, now)
        return notebook

    # -- watching -----------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Notice dead servers, stop those asked to stop, and mark busy ones active."""
        for container in self.containers.list(node=self.node, statuses=LIVE_CONTAINER):
            try:
                self._check(container)
            except Exception:  # one bad container must not stop the others' checks
                log.exception("checking notebook server %s", container.container_id)

    def _check(self, container: Container) -> None:
        cid = container.container_id
        if container.status == ContainerStatus.STOPPING:
            self._stop_local(cid, container.reason or "closed")
            return
        if container.status == ContainerStatus.STARTING:
            return  # its job's thread watches it
        with self._lock:
            proc = self._processes.get(cid)
            adopted = self._adopted.get(cid)
        if proc is not None:
            alive = proc.alive()
        elif adopted is not None:
            alive = is_alive(*adopted)
        else:
            return  # not ours: another process of this node (recover adopts at start)
        if not alive:
            code = proc.proc.returncode if proc is not None else None
            reason = last_line(self.state_dir(cid), code)
            log.warning("notebook server %s of %s died: %s", cid, container.username, reason)
            with self._lock:
                self._processes.pop(cid, None)
                self._adopted.pop(cid, None)
            self._release(cid)
            self._end_container(cid, ContainerStatus.STOPPED, f"The notebook server exited. {reason}")
            return
        try:
            kernels = self.client(container).kernels()
        except LabUnreachable:
            return
        if any(k.get("execution_state") == BUSY for k in kernels):
            self.containers.touch(cid, self.clock())

    def request_stop(self, container_id: str, reason: str) -> None:
        """Stop a server now if this process runs it (the API server's call in embedded mode)."""
        with self._lock:
            ours = container_id in self._processes or container_id in self._adopted
        if ours:
            self._stop_local(container_id, reason)

    def _stop_local(self, container_id: str, reason: str) -> None:
        with self._lock:
            proc = self._processes.pop(container_id, None)
            adopted = self._adopted.pop(container_id, None)
        if proc is not None:
            proc.stop(grace=self.settings.execution.kill_grace_seconds + 5)
        elif adopted is not None:
            stop_process(*adopted, grace=self.settings.execution.kill_grace_seconds + 5)
        else:
            found = self.containers.get(container_id)
            if found is not None and found.pid and found.node == self.node:
                stop_process(found.pid, found.pid_started, grace=5.0)
        self._release(container_id)
        self._end_container(container_id, ContainerStatus.STOPPED, reason)

    def _release(self, container_id: str) -> None:
        try:
            self.limits.release(f"lab-{container_id}")
        except OSError:
            log.warning("could not release the limits of notebook server %s", container_id)

    def _end_container(self, container_id: str, status: ContainerStatus, reason: str) -> None:
        now = self.clock()
        self.containers.update(container_id, expected=LIVE_CONTAINER, status=status, ended=now, reason=reason)
        self.containers.close_notebooks_of(container_id, now, reason)

    # -- start and stop of the hosting process ------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """At start: re-adopt this node's servers that still answer, stop the rest (kill -9 of the
        process that ran them leaves them running: they are in sessions of their own)."""
        counts = {"adopted": 0, "stopped": 0}
        for container in self.containers.list(node=self.node, statuses=LIVE_CONTAINER):
            cid = container.container_id
            with self._lock:
                if cid in self._processes:
                    continue
            alive = bool(container.pid) and is_alive(container.pid, container.pid_started)
            if alive and owned_by_a_live_process(container.pid):
                continue  # another nbjobs process of this machine started it and runs it
            if container.status == ContainerStatus.RUNNING and alive and self._answers(container):
                with self._lock:
                    self._adopted[cid] = (container.pid, container.pid_started)
                counts["adopted"] += 1
                log.info("re-adopted notebook server %s of %s", cid, container.username)
                continue
            if alive:
                stop_process(container.pid, container.pid_started, grace=5.0)
            self._release(cid)
            self._end_container(cid, ContainerStatus.STOPPED, RESTARTED)
            counts["stopped"] += 1
        return counts

    def running(self) -> list[str]:
        with self._lock:
            return [*self._processes, *self._adopted]

    def close(self) -> None:
        """Stop every server this process runs (the service saved their notebooks first)."""
        for container_id in self.running():
            try:  # each process is stopped before its record is written: a store error spares none
                self._stop_local(container_id, "The notebook server was stopped: nbjobs stopped.")
            except StoreError as exc:
                log.warning("notebook server %s stopped; its record was not updated: %s", container_id, exc)
