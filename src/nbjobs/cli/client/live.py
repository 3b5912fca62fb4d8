"""Following one job: its live snapshots from the SSE stream (``…/jobs/<id>/events``), resumed with
``Last-Event-ID`` when the connection drops, or polled when the server has no stream; and the part of
each snapshot's output tails that is new."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbjobs.cli.client.api import Api
from nbjobs.cli.client.errors import ClientError, ServerError, Unreachable, check_envelope
from nbjobs.cli.client.sse import EventReader

if TYPE_CHECKING:
    import httpx

ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_KERNEL_DIED = 138  # as `nbjobs run` and papermill
DEFAULT_RETRY_MS = 2000
POLL_SECONDS = 1.0
RECONNECT_FOR_SECONDS = 60.0  # the server unreachable this long while following: give up


def exit_status(status: str, failure: dict[str, Any] | None) -> int:
    """The exit status `nbjobs run` gives the same ending: 0 completed, 138 kernel died, else 1."""
    if status == "COMPLETED":
        return EXIT_COMPLETED
    if failure and failure.get("reason") == "kernel_died":
        return EXIT_KERNEL_DIED
    return EXIT_FAILED


def ending_line(job_id: str, status: str, failure: dict[str, Any] | None) -> str:
    """One line saying how the job ended, in `nbjobs run`'s words."""
    if status == "COMPLETED" or not failure:
        return f"{status}: job {job_id}"
    cell = failure.get("cellIndex")
    where = f" (cell {cell})" if cell is not None else ""
    message = " ".join(str(failure.get("message", "")).split())
    return f"{status} [{failure.get('reason', '')}]{where}: {message}"


@dataclass(frozen=True)
class Chunk:
    """New text of one stream of one cell; ``dropped`` characters before it were not kept."""

    cell_index: int
    name: str
    text: str
    dropped: int = 0


class OutputTail:
    """Remembers ``end`` per (cell, stream) and yields only what a snapshot adds to it. A new attempt
    (a retried job) starts its counts again."""

    def __init__(self) -> None:
        self._ends: dict[tuple[int, str], int] = {}
        self.attempt: int | None = None

    def new_attempt(self, attempt: Any) -> bool:
        """Note the snapshot's attempt; True when it is a later one than the output so far belonged to."""
        if not isinstance(attempt, int) or attempt == self.attempt:
            return False
        later = self.attempt is not None
        self.attempt = attempt
        if later:
            self._ends.clear()
        return later

    def new(self, output: Iterable[dict[str, Any]]) -> Iterator[Chunk]:
        for entry in output:
            key = (int(entry.get("cellIndex", 0)), str(entry.get("name", "stdout")))
            text = str(entry.get("text", ""))
            end = int(entry.get("end", len(text)))
            last = self._ends.get(key, 0)
            if end <= last:
                continue
            self._ends[key] = end
            added = end - last
            kept = min(added, len(text))
            yield Chunk(key[0], key[1], text[len(text) - kept :], added - kept)


def live_snapshot(api: Api, job_id: str) -> dict[str, Any]:
    """The job's live snapshot (``…/jobs/<id>/live``): progress, cells, output tails, failure."""
    snapshot: dict[str, Any] = api.get(f"/admin/notebooks/jobs/{job_id}/live")
    return snapshot


def _missing_route(exc: ServerError) -> bool:
    """An answer saying the server has no such route (an older server), not that the job is unknown."""
    return exc.code == 405 or (exc.code == 404 and "Resource not found" in exc.message)


def _data(text: str) -> dict[str, Any]:
    """An event's JSON object; anything else is the server's fault, said in one line."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ClientError(f"the server sent an event that is not a JSON object: {text[:80]!r}")
    return value


def _poll_view(job: dict[str, Any]) -> dict[str, Any]:
    """A snapshot-shaped view of the plain job JSON, for a server without the live API."""
    progress = job.get("customAttributes", {}).get("executeNotebookProgress") or {}
    return {
        "jobId": job.get("jobId"),
        "status": job.get("status", ""),
        "revision": job.get("revision", 0),
        "progress": {"percent": progress.get("percent", 0), "message": progress.get("message", "")},
        "codeCells": 0,
        "cells": [],
        "output": [],
        "failure": job.get("failure"),
    }


class JobFollower:
    """The snapshots of one job, in order, until it has ended (the last one is its end state)."""

    def __init__(
        self,
        api: Api,
        job_id: str,
        *,
        poll_seconds: float = POLL_SECONDS,
        reconnect_for: float = RECONNECT_FOR_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api
        self.job_id = job_id
        self.poll_seconds = poll_seconds
        self.reconnect_for = reconnect_for
        self.sleep = sleep
        self.status = ""
        self.failure: dict[str, Any] | None = None
        self.reconnects = 0  # streams resumed after a drop
        self.polling = False  # the server has no stream: polled instead
        self._reader = EventReader()

    @property
    def exit_status(self) -> int:
        return exit_status(self.status, self.failure)

    def _seen(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        self.status = str(snapshot.get("status", self.status))
        if snapshot.get("failure") is not None or self.status in ENDED:
            self.failure = snapshot.get("failure")
        return snapshot

    def snapshots(self) -> Iterator[dict[str, Any]]:
        failing_since: float | None = None
        while True:
            try:
                ended = yield from self._stream()
            except Unreachable:
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                if now - failing_since > self.reconnect_for:
                    raise
                ended = False
            else:
                failing_since = None
            if ended:
                return
            if self.polling:
                yield from self._poll()
                return
            self.reconnects += 1
            self.sleep((self._reader.retry_ms or DEFAULT_RETRY_MS) / 1000)

    def _stream(self) -> Generator[dict[str, Any], None, bool]:
        """One connection's snapshots; True when the job ended, False when the connection dropped."""
        import httpx

        path = f"/admin/notebooks/jobs/{self.job_id}/events"
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self._reader.last_id:
            headers["Last-Event-ID"] = self._reader.last_id
        with self.api.stream(path, headers) as response:
            kind = response.headers.get("content-type", "").split(";")[0].strip()
            if kind != "text/event-stream":
                self._refused(response)
                return False
            try:
                for event in self._reader.events(response.iter_lines()):
                    if event.event == "job":
                        yield self._seen(_data(event.data))
                    elif event.event == "end":
                        ending = _data(event.data)
                        self.status = str(ending.get("status", self.status))
                        if self.status != "COMPLETED" and self.failure is None:
                            job = self.api.get(f"/admin/notebooks/jobs/{self.job_id}")
                            self.failure = job.get("failure")  # the final snapshot was not sent again
                        return True
                    elif event.event == "error":
                        error = _data(event.data)
                        raise ServerError(int(error.get("code", 500)), str(error.get("message", "")))
            except httpx.TransportError:
                return False  # dropped (read error, timeout past the heartbeats): resume
        return self.status in ENDED and self._ended_on_server()

    def _ended_on_server(self) -> bool:
        return str(self.api.get(f"/admin/notebooks/jobs/{self.job_id}").get("status")) in ENDED

    def _refused(self, response: httpx.Response) -> None:
        """A JSON answer instead of a stream: an error of the job (raised), or no such route (poll)."""
        response.read()
        try:
            answer = response.json()
        except ValueError:
            answer = None
        try:
            check_envelope(answer)
        except ServerError as exc:
            if not _missing_route(exc):
                raise
        self.polling = True

    def _poll(self) -> Iterator[dict[str, Any]]:
        last: Any = None
        live = True  # the snapshot route, until the server says it has none
        while True:
            view = None
            if live:
                try:
                    view = live_snapshot(self.api, self.job_id)
                except ServerError as exc:
                    if not _missing_route(exc):
                        raise
                    live = False
            if view is None:
                view = _poll_view(self.api.get(f"/admin/notebooks/jobs/{self.job_id}"))
            view = self._seen(view)
            if view != last:
                yield view
                last = view
            if self.status in ENDED:
                return
            self.sleep(self.poll_seconds)
