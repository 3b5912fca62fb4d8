"""An in-memory JobStore for unit tests of the layers above; it passes the same contract suite."""

from __future__ import annotations

import builtins
import dataclasses
import threading
from collections import Counter
from typing import Any

from nbjobs.models.events import JobCount
from nbjobs.models.jobs import ENDED, NO_FILTER, RUNNING, Job, JobFilter, JobStatus, JobUpdate, sources_of
from nbjobs.models.live import JobChange, LiveProgress


class MemoryJobStore:
    """Dict-backed store; one lock makes every method atomic, like a single SQL statement."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._blobs: dict[tuple[str, str], bytes] = {}
        self._pids: dict[str, tuple[int, int]] = {}
        self._live: dict[str, LiveProgress] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        pass

    def create(self, job: Job, notebook: bytes, *, max_active: int = 0) -> bool:
        with self._lock:
            if job.job_id in self._jobs:
                raise ValueError(f"duplicate job id {job.job_id}")
            if max_active > 0:
                active = sum(1 for j in self._jobs.values() if j.username == job.username and not j.ended)
                if active >= max_active:
                    return False
            self._jobs[job.job_id] = job
            self._blobs[(job.job_id, "input")] = notebook
            return True

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def list(
        self,
        *,
        username: str | None = None,
        statuses: frozenset[JobStatus] | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
        where: JobFilter = NO_FILTER,
    ) -> builtins.list[Job]:
        found: builtins.list[Job] = sorted(
            self._select(username, statuses, where), key=lambda j: (j.date_created, j.job_id)
        )
        if newest_first:
            found.reverse()
        return found[offset : offset + limit]

    def count(
        self,
        *,
        username: str | None = None,
        statuses: frozenset[JobStatus] | None = None,
        where: JobFilter = NO_FILTER,
    ) -> int:
        return len(self._select(username, statuses, where))

    def active_counts(self) -> builtins.list[JobCount]:
        with self._lock:
            found = Counter((j.type, j.status, j.runtime.name) for j in self._jobs.values() if not j.ended)
        return [JobCount(t, s, name, n) for (t, s, name), n in found.items()]

    def transition(
        self,
        job_id: str,
        target: JobStatus,
        now: int,
        *,
        attempt: int | None = None,
        update: JobUpdate | None = None,
        expected: frozenset[JobStatus] | None = None,
    ) -> Job | None:
        sources = sources_of(target) if expected is None else sources_of(target) & expected
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status not in sources or (attempt is not None and job.attempt != attempt):
                return None
            changes = _changes(update)
            changes.update(status=target, revision=now)
            if target in ENDED:
                changes.setdefault("end_time", now)
                changes["lease_expires"] = 0
            job = dataclasses.replace(job, **changes)
            self._jobs[job_id] = job
            if update is not None and update.live is not None:
                self._live[job_id] = update.live
            return job

    def claim_next(self, worker_id: str, now: int, lease_ms: int, *, per_user_cap: int = 0) -> Job | None:
        with self._lock:
            waiting = [
                j for j in self._jobs.values() if j.status == JobStatus.SUBMITTED and j.not_before <= now
            ]
            if per_user_cap > 0:
                busy: dict[str, int] = {}
                for j in self._jobs.values():
                    if j.status in RUNNING:
                        busy[j.username] = busy.get(j.username, 0) + 1
                waiting = [j for j in waiting if busy.get(j.username, 0) < per_user_cap]
            if not waiting:
                return None
            job = min(waiting, key=lambda j: (j.date_created, j.job_id))
            return self._claim(job, job.attempt + 1, worker_id, now, lease_ms)

    def claim(
        self, job_id: str, attempt: int, worker_id: str, now: int, lease_ms: int, *, per_user_cap: int = 0
    ) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if (
                job is None
                or job.status != JobStatus.SUBMITTED
                or job.attempt != attempt - 1
                or job.not_before > now
            ):
                return None
            if per_user_cap > 0:
                busy = sum(
                    1 for j in self._jobs.values() if j.username == job.username and j.status in RUNNING
                )
                if busy >= per_user_cap:
                    return None
            return self._claim(job, attempt, worker_id, now, lease_ms)

    def _claim(self, job: Job, attempt: int, worker_id: str, now: int, lease_ms: int) -> Job:
        job = dataclasses.replace(
            job,
            status=JobStatus.EXECUTING,
            attempt=attempt,
            worker_id=worker_id,
            lease_expires=now + lease_ms,
            start_time=now,
            revision=now,
            progress_message="Starting kernel",
            progress_percent=0,
        )
        self._jobs[job.job_id] = job
        self._pids[job.job_id] = (0, 0)
        return job

    def heartbeat(self, job_id: str, attempt: int, now: int, lease_ms: int) -> Job | None:
        with self._lock:
            job = self._owned(job_id, attempt)
            if job is None:
                return None
            job = dataclasses.replace(job, lease_expires=now + lease_ms)
            self._jobs[job_id] = job
            return job

    def set_progress(
        self,
        job_id: str,
        attempt: int,
        now: int,
        percent: int,
        message: str,
        live: LiveProgress | None = None,
    ) -> bool:
        with self._lock:
            job = self._owned(job_id, attempt)
            if job is None:
                return False
            self._jobs[job_id] = dataclasses.replace(
                job, progress_percent=percent, progress_message=message, revision=now
            )
            if live is not None:
                self._live[job_id] = live
            return True

    def live(self, job_id: str) -> LiveProgress | None:
        return self._live.get(job_id)

    def changes(
        self, since: int, *, username: str | None = None, limit: int = 500
    ) -> builtins.list[JobChange]:
        with self._lock:
            found = sorted(
                (j for j in self._jobs.values() if j.revision > since and username in (None, j.username)),
                key=lambda j: (j.revision, j.job_id),
            )[:limit]
        return [
            JobChange(
                j.job_id,
                j.username,
                str(j.type),
                str(j.status),
                j.runtime.name,
                j.date_created,
                j.revision,
                j.progress_percent,
                j.progress_message,
            )  # fmt: skip
            for j in found
        ]

    def set_processes(self, job_id: str, attempt: int, runner_pid: int, kernel_pid: int) -> bool:
        with self._lock:
            if self._owned(job_id, attempt) is None:
                return False
            self._pids[job_id] = (runner_pid, kernel_pid)
            return True

    def processes(self, job_id: str) -> tuple[int, int]:
        return self._pids.get(job_id, (0, 0))

    def expired(self, now: int) -> builtins.list[Job]:
        return [j for j in self._jobs.values() if j.status in RUNNING and j.lease_expires < now]

    def running_on(self, worker_prefix: str) -> builtins.list[Job]:
        return [
            j for j in self._jobs.values() if j.status in RUNNING and j.worker_id.startswith(worker_prefix)
        ]

    def put_blob(self, job_id: str, kind: str, data: bytes, now: int, *, attempt: int | None = None) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or (attempt is not None and job.attempt != attempt):
                return False
            self._blobs[(job_id, kind)] = data
            return True

    def get_blob(self, job_id: str, kind: str) -> bytes | None:
        return self._blobs.get((job_id, kind))

    def delete_ended(self, *, ended_before: int | None = None, username: str | None = None) -> int:
        with self._lock:
            doomed = [
                j.job_id
                for j in self._jobs.values()
                if j.status in ENDED
                and (ended_before is None or j.end_time < ended_before)
                and (username is None or j.username == username)
            ]
            for job_id in doomed:
                del self._jobs[job_id]
                self._pids.pop(job_id, None)
                self._live.pop(job_id, None)
                for kind in ("input", "output"):
                    self._blobs.pop((job_id, kind), None)
            return len(doomed)

    def _owned(self, job_id: str, attempt: int) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.status not in RUNNING or job.attempt != attempt:
            return None
        return job

    def _select(
        self, username: str | None, statuses: frozenset[JobStatus] | None, where: JobFilter = NO_FILTER
    ) -> builtins.list[Job]:
        return [
            j
            for j in self._jobs.values()
            if (username is None or j.username == username)
            and (statuses is None or j.status in statuses)
            and where.admits(j)
        ]


def _changes(update: JobUpdate | None) -> dict[str, Any]:
    if update is None:
        return {}
    return {
        f.name: getattr(update, f.name)
        for f in dataclasses.fields(update)
        if getattr(update, f.name) is not None and f.name != "live"
    }
