"""A job's live view (``…/jobs/<id>/live``) and the two event streams: one job, and the caller's job list.

Both families' paths. The same authorization as the job itself: another user's job answers exactly like
an unknown one, before any stream starts. The wire contract (events, ids, resume) is in docs/api.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from nbjobs.errors import JobNotFound, NbJobsError
from nbjobs.models.accounts import Principal
from nbjobs.models.jobs import is_job_id
from nbjobs.models.live import JobChange
from nbjobs.service.authz import may_see
from nbjobs.web.deps import Form, Nb, SignedIn, token_of
from nbjobs.web.render import Link, respond
from nbjobs.web.routing import operation
from nbjobs.web.services import WebServices
from nbjobs.web.sse import EventStreamResponse, comment, event, retry
from nbjobs.web.views import live_view

router = APIRouter(prefix="/admin")
TAGS = ("jobs",)
RETRY_MS = 2000
MISSED_LIMIT = 1000  # a list stream resumed after more changes than this is told to reload (reset)
QUEUE_BATCHES = 256  # batches a slow list-stream reader may fall behind before it is reset


async def _json_by_default(params: Form) -> None:
    """A stream's client is a program (EventSource, the CLI): its errors are JSON unless f says not.
    Declared before the signed-in user, so that a missing token is answered in JSON too."""
    params.values.setdefault("f", "json")


JsonByDefault = Annotated[None, Depends(_json_by_default)]


def _last_event_id(request: Request, params: Form) -> str:
    return request.headers.get("last-event-id", "").strip() or params.text("lastEventId")


def _check(job_id: str) -> None:
    if not is_job_id(job_id):
        raise JobNotFound(job_id)


# -- the live view --------------------------------------------------------------------------------------


def _live(request: Request, job_id: str, nb: Nb, user: SignedIn) -> Response:
    _check(job_id)
    job, live = nb.jobs.live(user.principal(), job_id)
    base = f"/{nb.settings.server.context}/admin/notebooks/jobs/{job_id}"
    return respond(request, live_view(job, live), title=f"Job {job_id}: live", links=[Link("job", base)])


@operation(
    router, "/notebooks/jobs/{job_id}/live", summary="A job's live progress and output tail", tags=TAGS
)
def notebook_job_live(request: Request, job_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    return _live(request, job_id, nb, user)


@operation(router, "/system/jobs/{job_id}/live", summary="A job's live progress and output tail", tags=TAGS)
def system_job_live(request: Request, job_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    return _live(request, job_id, nb, user)


# -- one job's stream -----------------------------------------------------------------------------------


async def _job_stream(request: Request, job_id: str, nb: Nb, user: SignedIn, params: Form) -> Response:
    _check(job_id)
    who = user.principal()
    await run_in_threadpool(nb.jobs.get, who, job_id)  # unknown or not visible: the error, no stream
    stream = _Stream(nb, token_of(request, params))
    return EventStreamResponse(stream.job(who, job_id, _last_event_id(request, params)))


@operation(
    router, "/notebooks/jobs/{job_id}/events", summary="A job's events (SSE)", methods=("GET",), tags=TAGS
)
async def notebook_job_events(
    request: Request, job_id: str, _json: JsonByDefault, nb: Nb, user: SignedIn, params: Form
) -> Response:
    return await _job_stream(request, job_id, nb, user, params)


@operation(
    router, "/system/jobs/{job_id}/events", summary="A job's events (SSE)", methods=("GET",), tags=TAGS
)
async def system_job_events(
    request: Request, job_id: str, _json: JsonByDefault, nb: Nb, user: SignedIn, params: Form
) -> Response:
    return await _job_stream(request, job_id, nb, user, params)


# -- the job list's stream ------------------------------------------------------------------------------


def _list_stream(request: Request, nb: Nb, user: SignedIn, params: Form) -> Response:
    last = _last_event_id(request, params)
    since = int(last) if last.isdigit() else None
    stream = _Stream(nb, token_of(request, params))
    return EventStreamResponse(stream.jobs(user.principal(), since))


@operation(
    router,
    "/notebooks/jobs/events",
    summary="Changes of the caller's jobs (SSE)",
    methods=("GET",),
    tags=TAGS,
)
async def notebook_jobs_events(
    request: Request, _json: JsonByDefault, nb: Nb, user: SignedIn, params: Form
) -> Response:
    return _list_stream(request, nb, user, params)


@operation(
    router, "/system/jobs/events", summary="Changes of the caller's jobs (SSE)", methods=("GET",), tags=TAGS
)
async def system_jobs_events(
    request: Request, _json: JsonByDefault, nb: Nb, user: SignedIn, params: Form
) -> Response:
    return _list_stream(request, nb, user, params)


class _Stream:
    """One open stream: its subscription to the feed, its heartbeat and its token re-check."""

    def __init__(self, nb: WebServices, token: str) -> None:
        self.nb = nb
        self.token = token
        self.heartbeat = nb.settings.server.stream_heartbeat_seconds
        self.ends_at = time.monotonic() + nb.settings.server.stream_max_seconds

    def _timeout(self) -> float:
        """How long the next wait may be: a heartbeat, or less when the stream's time is nearly up."""
        return max(min(self.heartbeat, self.ends_at - time.monotonic()), 0.0)

    def _over(self) -> bool:
        """True when the stream should end quietly: its time is up or the server is stopping."""
        return self.nb.feed.closed or time.monotonic() >= self.ends_at

    async def _still_signed_in(self) -> str | None:
        """None while the token is good; else the error event that ends the stream."""
        try:
            await run_in_threadpool(self.nb.tokens.authenticate, self.token)
        except NbJobsError as exc:
            return event("error", {"code": exc.code, "message": exc.message})
        return None

    async def job(self, who: Principal, job_id: str, last_id: str) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def on_changes(changes: Sequence[JobChange]) -> None:
            if any(c.job_id == job_id for c in changes):
                loop.call_soon_threadsafe(changed.set)

        subscription = self.nb.feed.subscribe(on_changes)  # before the first read: no change is missed
        try:
            yield retry(RETRY_MS)
            sent = last_id
            while True:
                try:
                    job, live = await run_in_threadpool(self.nb.jobs.live, who, job_id)
                except JobNotFound as exc:  # deleted meanwhile
                    yield event("error", {"code": exc.code, "message": exc.message})
                    return
                if str(job.revision) != sent:
                    sent = str(job.revision)
                    yield event("job", live_view(job, live), event_id=job.revision)
                if job.ended:
                    yield event("end", {"status": str(job.status)})
                    return
                while not await self._wait(changed):
                    if self._over():
                        return
                    error = await self._still_signed_in()
                    if error is not None:
                        yield error
                        return
                    yield comment("keep-alive")
                changed.clear()
        finally:
            subscription.close()

    async def jobs(self, who: Principal, since: int | None) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        batches: asyncio.Queue[Sequence[JobChange] | None] = asyncio.Queue(QUEUE_BATCHES)

        def put(changes: Sequence[JobChange]) -> None:
            try:
                batches.put_nowait(changes)
            except asyncio.QueueFull:  # a reader this far behind reloads instead
                _reset_queue(batches)

        def on_changes(changes: Sequence[JobChange]) -> None:
            visible = [c for c in changes if may_see(who, c.username)]
            if visible:
                loop.call_soon_threadsafe(put, visible)

        subscription = self.nb.feed.subscribe(on_changes)
        try:
            yield retry(RETRY_MS)
            if since is not None:
                missed = await run_in_threadpool(self.nb.jobs.changes, who, since, limit=MISSED_LIMIT)
                if len(missed) >= MISSED_LIMIT:
                    yield event("reset", {})
                else:
                    for change in missed:
                        yield _change(change)
            cursor = self.nb.feed.cursor()
            yield event("ready", {"cursor": cursor}, event_id=cursor)
            while True:
                try:
                    batch = await asyncio.wait_for(batches.get(), self._timeout())
                except TimeoutError:
                    if self._over():
                        return
                    error = await self._still_signed_in()
                    if error is not None:
                        yield error
                        return
                    yield comment("keep-alive")
                    continue
                if batch is None:
                    yield event("reset", {})
                    continue
                for change in batch:
                    yield _change(change)
        finally:
            subscription.close()

    async def _wait(self, changed: asyncio.Event) -> bool:
        try:
            await asyncio.wait_for(changed.wait(), self._timeout())
        except TimeoutError:
            return False
        return True


def _change(change: JobChange) -> str:
    return event("job", change.to_wire(), event_id=change.revision)


def _reset_queue(batches: asyncio.Queue[Any]) -> None:
    while not batches.empty():
        batches.get_nowait()
    batches.put_nowait(None)
