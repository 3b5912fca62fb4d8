"""One claimed job's run, from hand-over to its one fenced end write: write the runner its request,
relay progress, renew the lease, watch cancel and deadline (stopping in stages), read the verdict.

The ``Supervisor`` (``supervisor.py``) owns the warm pools and makes one ``JobRun`` per job, in the
calling thread.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import logging
import os
import pwd
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nbjobs.errors import StoreUnavailable
from nbjobs.execution.contract import JobCredentials, deadline_minutes
from nbjobs.execution.engine import ExecutionRequest
from nbjobs.execution.processes import RunnerProcess
from nbjobs.execution.runner import request_to_json
from nbjobs.execution.stopping import StagedStop, kill_run, sweep
from nbjobs.execution.verdict import RunEnd, results_of, verdict
from nbjobs.execution.warm_pool import WarmPool
from nbjobs.models.jobs import (
    OUTPUT,
    RUNNING,
    Failure,
    FailureReason,
    Job,
    JobStatus,
    retry_or_end,
)
from nbjobs.models.live import LiveRecorder
from nbjobs.models.runtimes import RuntimeSpec

if TYPE_CHECKING:
    from nbjobs.execution.supervisor import Supervisor

log = logging.getLogger("nbjobs.execution.supervisor")  # the supervisor's log, as before the split
# Progress is written at most this often (the final state always is): a 20-cell notebook would
# otherwise pay 20 database commits on its critical path.
_PROGRESS_INTERVAL = 0.2
# How often a write the job cannot do without (its input, its end) is tried again while the database
# is unavailable, and for how long at least (a restart takes seconds; the lease decides after that).
_RETRY_EVERY = 0.5
_RETRY_AT_LEAST = 30.0
T = TypeVar("T")


def log_end(job: Job, ended: Job | None) -> None:
    """The job's end in the log: FAILED at WARNING (with its reason), other ends at INFO."""
    if ended is None:
        log.info("job %s attempt %s was fenced out: another attempt or the reaper ended it", job.job_id,
                 job.attempt)  # fmt: skip
    elif ended.status == JobStatus.FAILED:
        failure = ended.failure
        reason = str(failure.reason) if failure is not None else "unknown"
        message = (failure.message if failure is not None else "")[:500]
        log.warning("job %s attempt %s FAILED (%s): %s", job.job_id, job.attempt, reason, message)
    else:
        log.info("job %s attempt %s ended %s", job.job_id, job.attempt, ended.status)


class JobRun:
    def __init__(self, sup: Supervisor, job: Job, spec: RuntimeSpec, pool: WarmPool, workdir: Path) -> None:
        self.sup = sup
        self.spec = spec
        self.pool = pool
        self.group = f"{job.job_id}-{job.attempt}"
        self.store = sup.store
        self.settings = sup.settings
        self.clock = sup.clock
        self.job = job
        self.workdir = workdir
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.kernel_pid = 0
        self.done: dict[str, Any] | None = None
        self.stop: StagedStop | None = None
        self.fenced = False
        self.reader_finished = False
        self.progress: tuple[int, str] | None = None  # the latest reported, written at most every 0.2 s
        self.progress_written = 0.0
        self.progress_pending = False
        self.live = LiveRecorder(job.attempt)  # cells and output tails, written with the progress
        self.proc: RunnerProcess | None = None
        self.credentials: JobCredentials | None = None
        self.database_down = False  # a write failed on an unavailable database; the run goes on
        self.check_now = False  # set by Supervisor.wake (cancel notification)
        self.took_ready = False  # the runner's kernel was ready when taken: its start cost the job nothing

    # -- lifecycle ----------------------------------------------------------------------------------
    def run(self) -> Job | None:
        job = self.job
        notebook = self._retrying(lambda: self.store.get_blob(job.job_id, "input")) or b""
        cwd = self.workdir / "work"
        cwd.mkdir(parents=True, exist_ok=True)
        _give_to(self.settings.execution.kernel_user, cwd)
        output = self.workdir / "output.ipynb"
        spec = self.spec
        env = self._kernel_env(cwd)
        if self.sup.credentials is not None:
            self.credentials = self.sup.credentials(job, deadline_minutes(job, self.sup.max_minutes(), spec))
            auth = self.workdir / "nb_auth.json"
            auth.touch(mode=0o600)
            auth.write_text(json.dumps(self.credentials.auth))
            _give_to(self.settings.execution.kernel_user, auth)
            env["NB_AUTH_FILE"] = str(auth)
        request = ExecutionRequest(
            notebook=notebook,
            parameters=job.inputs.notebook_parameters,
            # A runtime with its own environment decides the kernel; the default runtime honours the
            # notebook's kernelspec, as Jupyter does.
            kernel_name=spec.kernel_name if spec.python and not spec.is_default else "",
            default_kernel_name=spec.kernel_name,
            save_injected_parameters=job.inputs.save_injected_parameters,
            cwd=str(cwd),
            env=env,
            max_cell_output_bytes=self.settings.limits.max_cell_output_bytes,
            max_notebook_output_bytes=spec.max_output_bytes or self.settings.limits.max_notebook_output_bytes,
            memory_bytes=spec.memory_bytes,
            swap_bytes=spec.swap_bytes,
            cpus=spec.max_cpu,
            limit_backend=self.sup.limits.name,
            limit_group=self.group,
            output_names=tuple(job.inputs.output_names),
            run_as=self.settings.execution.kernel_user,
        )
        runner = self.pool.take(spec.kernel_name)
        # a cold start (the warm kernel unusable) starts its kernel the way the runner's would have
        request = dataclasses.replace(
            request, fork_socket=runner.start.fork_socket, fork_fallback=runner.start.fallback
        )
        self.took_ready = runner.taken_ready
        stderr_path = runner.log_path
        proc = runner.proc
        self.proc = proc
        try:
            self.store.set_processes(job.job_id, job.attempt, proc.pid, 0)
        except StoreUnavailable as exc:  # only the cancel of a lost worker's job needs it
            self._unavailable(exc)
        # the reader logs about this job too: it runs in a copy of this thread's log context
        reader = threading.Thread(target=contextvars.copy_context().run, args=(self._read, proc), daemon=True)
        reader.start()
        try:
            assert proc.stdin is not None
            proc.stdin.write(request_to_json(request, output))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        self._watch(proc)
        sweep(proc, reader, self.kernel_pid, reported=self.done is not None)
        oom = False
        if request.limits:
            oom = self.sup.limits.oom_killed(self.group)
            self.sup.limits.release(self.group)  # also kills anything of the job's still in its group
        if self.credentials is not None:
            self.credentials.revoke()
        try:
            if self.fenced:
                return None
            return self._finish(output, stderr_path, proc.returncode, oom=oom)
        finally:
            runner.forget()

    def _watch(self, proc: RunnerProcess) -> None:
        settings = self.settings
        job = self.job
        deadline = time.monotonic() + deadline_minutes(job, self.sup.max_minutes(), self.spec) * 60
        next_beat = time.monotonic() + settings.execution.heartbeat_seconds
        next_check = 0.0
        lease_ms = int(settings.execution.lease_seconds * 1000)
        exited_at = 0.0
        while True:
            try:
                self._pump(timeout=min(settings.execution.poll_seconds, _PROGRESS_INTERVAL))
                if self.done is not None:
                    return  # the runner reported its end and its output is on disk; no need to see it exit
                if proc.poll() is not None:
                    exited_at = exited_at or time.monotonic()
                    # Crashed without a "done": drain what it said, don't wait on a pipe a straggler holds.
                    if self._drained() or time.monotonic() - exited_at > 2:
                        return
                    continue
                self._flush_progress()
                now = time.monotonic()
                if now >= next_beat:
                    next_beat = now + settings.execution.heartbeat_seconds
                    renewed = self.store.heartbeat(job.job_id, job.attempt, self.clock(), lease_ms)
                    self._available()
                    if renewed is None:
                        log.warning("job %s attempt %s lost its lease; stopping it", job.job_id, job.attempt)
                        self.fenced = True
                        kill_run(self.kernel_pid, proc.pid)
                        continue
                if self.stop is not None:
                    self.stop.advance(self.kernel_pid)
                elif now >= next_check or self.check_now:
                    self.check_now = False
                    next_check = now + settings.execution.poll_seconds
                    current = self.store.get(job.job_id)
                    if current is None or current.attempt != job.attempt or current.status not in RUNNING:
                        self.fenced = True  # deleted, re-run, re-queued or ended by someone else
                        kill_run(self.kernel_pid, proc.pid)
                    elif current.cancel_requested:
                        self._begin_stop(FailureReason.CANCELLED)
                    elif now >= deadline:
                        self._begin_stop(FailureReason.TIMEOUT)
            except StoreUnavailable as exc:  # the database restarts or is down: the job runs on
                self._unavailable(exc)

    def _drained(self) -> bool:
        return self.events.empty() and self.reader_finished

    def _read(self, proc: RunnerProcess) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                log.warning("runner %s wrote a non-JSON line: %r", proc.pid, line[:200])
        self.reader_finished = True
        self.events.put(None)

    def _pump(self, timeout: float) -> None:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        while event is not None or not self.events.empty():
            if event is not None:
                self._handle(event)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, event: dict[str, Any]) -> None:
        job = self.job
        kind = event.get("event")
        if kind == "kernel":
            self.kernel_pid = int(event["pid"])
            runner_pid = self.proc.pid if self.proc is not None else 0
            self.store.set_processes(job.job_id, job.attempt, runner_pid, self.kernel_pid)
            if self.stop is not None:  # a cancel arrived while the kernel was starting
                self.stop.kernel_started(self.kernel_pid)
            if "seconds" in event:  # warm: started ahead and ready when taken, and the job used that kernel
                warm = self.took_ready and bool(event.get("warm"))
                self.sup.events.kernel_started(job, float(event["seconds"]), warm=warm)
        elif kind == "progress" and self.stop is None:
            self.progress = (int(event["percent"]), str(event["message"]))
            self.progress_pending = True
            cell = int(event.get("cell", -1))
            if cell >= 0:
                self.live.begin(cell, self.clock(), int(event.get("cells") or 0))
            self._flush_progress()
        elif kind == "cell":
            self.live.end(int(event["cell"]), bool(event.get("ok")), self.clock())
        elif kind == "output":
            self.live.output(int(event["cell"]), str(event["name"]), str(event["text"]), int(event["chars"]))
        elif kind == "done":
            self.done = event

    def _flush_progress(self) -> None:
        """Write the latest progress and live view if either is new and the last write is old enough."""
        now = time.monotonic()
        due = self.progress_pending or self.live.changed
        if due and now - self.progress_written >= _PROGRESS_INTERVAL:
            self.progress_written = now
            job = self.job
            percent, message = self.progress or (job.progress_percent, job.progress_message)
            live = self.live.snapshot()
            try:
                self.store.set_progress(job.job_id, job.attempt, self.clock(), percent, message, live)
            except StoreUnavailable:
                self.live.changed = True  # written with the next one
                raise
            self.progress_pending = False  # not before: a write the database refused is tried again

    # -- staged stop --------------------------------------------------------------------------------
    def _begin_stop(self, reason: FailureReason) -> None:
        job = self.job
        log.info("stopping job %s: %s", job.job_id, reason)
        runner_pid = self.proc.pid if self.proc is not None else 0
        execution = self.settings.execution
        self.stop = StagedStop(
            reason, runner_pid, grace=execution.cancel_grace_seconds, kill_grace=execution.kill_grace_seconds
        )
        if reason == FailureReason.TIMEOUT:
            self.store.set_progress(job.job_id, job.attempt, self.clock(), job.progress_percent, "Timed out")
        self.stop.begin(self.kernel_pid)

    # -- the end ------------------------------------------------------------------------------------
    def _finish(self, output: Path, stderr_path: Path, returncode: int | None, *, oom: bool) -> Job | None:
        job = self.job
        done = self.done or {}
        if output.exists():
            blob = output.read_bytes()
            self._retrying(
                lambda: self.store.put_blob(job.job_id, OUTPUT, blob, self.clock(), attempt=job.attempt)
            )
        end = RunEnd(
            done=done,
            stop_reason=self.stop.reason if self.stop is not None else None,
            deadline_minutes=deadline_minutes(job, self.sup.max_minutes(), self.spec),
            memory_bytes=self.spec.memory_bytes,
            oom=oom,
            returncode=returncode,
            log_path=stderr_path,
            job_id=job.job_id,
        )
        status, failure = verdict(end)
        results = results_of(done, has_output=output.exists())
        # Fenced by attempt and status: a retry after a commit whose answer was lost changes nothing.
        return self._retrying(lambda: self._end(status, failure, results))

    # -- database outages ---------------------------------------------------------------------------
    def _unavailable(self, exc: StoreUnavailable) -> None:
        if not self.database_down:
            self.database_down = True
            log.warning("job %s: the database is unavailable (%s); the job runs on, retrying",
                        self.job.job_id, exc.__cause__ or exc)  # fmt: skip

    def _available(self) -> None:
        if self.database_down:
            self.database_down = False
            log.warning("job %s: the database is back", self.job.job_id)

    def _retrying(self, call: Callable[[], T]) -> T:
        """``call()``, tried again while the database is unavailable, for at least a lease or
        _RETRY_AT_LEAST seconds; then the error stands (the lease reaper ends the job once it is back)."""
        give_up = time.monotonic() + max(_RETRY_AT_LEAST, 3 * self.settings.execution.lease_seconds)
        while True:
            try:
                value = call()
            except StoreUnavailable as exc:
                self._unavailable(exc)
                if time.monotonic() >= give_up:
                    raise
                time.sleep(_RETRY_EVERY)
                continue
            self._available()
            return value

    def _end(self, status: JobStatus, failure: Failure | None, results: dict[str, Any]) -> Job | None:
        job = self.job
        now = self.clock()
        percent, message = self.progress or (None, None)
        target, how = retry_or_end(job, status, failure, now)
        self.live.stop(now, failure.cell_index if failure is not None else None)
        live = self.live.snapshot()
        update = dataclasses.replace(
            how,
            results=results,
            progress_percent=100 if failure is None else percent,
            progress_message=how.progress_message or message,
            live=live,
        )
        ended = self.store.transition(
            job.job_id, target, now, attempt=job.attempt, update=update, expected=RUNNING
        )
        if ended is None and target == JobStatus.SUBMITTED:
            # A cancel came first (CANCELLING never goes back to SUBMITTED): this attempt is the last.
            _, last = retry_or_end(job, status, failure, now, may_retry=False)
            update = dataclasses.replace(
                last, results=results, progress_percent=percent, progress_message=message, live=live
            )
            ended = self.store.transition(
                job.job_id, status, now, attempt=job.attempt, update=update, expected=RUNNING
            )
        elif ended is not None and target == JobStatus.SUBMITTED:
            log.warning("job %s: %s", job.job_id, how.progress_message)
        if ended is not None and ended.ended:
            self.sup.events.ended(ended)  # the write that won; a retry (SUBMITTED again) is no end
        # None: someone else ended or re-ran the job meanwhile (the reaper, a newer attempt); theirs stands.
        return ended or self.store.get(job.job_id)

    def _kernel_env(self, cwd: Path) -> dict[str, str]:
        env = dict(self.settings.execution.kernel_env)
        env["NBJOBS_JOB_ID"] = self.job.job_id
        kernel_user = self.settings.execution.kernel_user
        if kernel_user:  # the server's home is not the kernel user's
            env.update(HOME=str(cwd), USER=kernel_user, LOGNAME=kernel_user)
        else:
            env.setdefault("HOME", str(cwd))
        return env


def _give_to(username: str, path: Path) -> None:
    """Hand a job's file or directory to the OS user its kernel runs as (no-op without one)."""
    if username:
        account = pwd.getpwnam(username)
        os.chown(path, account.pw_uid, account.pw_gid)
