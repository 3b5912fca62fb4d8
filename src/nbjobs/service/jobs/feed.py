"""The change feed behind the job streams: one poller per server process, only while someone listens.

Every write to a job sets its ``revision`` (the writer's clock, epoch ms). The poller asks the store,
every ``interval`` seconds, for the jobs whose revision is after *the newest revision it has seen minus
an overlap* and tells each subscriber of the ones it has not told yet. The overlap catches a write whose
transaction committed after a newer one (its revision was taken before the commit) and a writer whose
clock is a little behind (machines must agree within ``overlap_ms``, as job leases already need). The
same poller serves embedded and distributed mode: workers on other machines write the same table.

Subscribers' callbacks run on the poller's thread and must only hand the batch over (the streams put it
on their event loop with ``call_soon_threadsafe``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from nbjobs.clock import Clock
from nbjobs.errors import StoreUnavailable
from nbjobs.models.live import JobChange

log = logging.getLogger(__name__)

Changes = Callable[[int, int], Sequence[JobChange]]  # (since, limit) -> changes, oldest first
Callback = Callable[[Sequence[JobChange]], None]


class Subscription:
    def __init__(self, feed: JobFeed, callback: Callback) -> None:
        self.feed = feed
        self.callback = callback

    def close(self) -> None:
        self.feed._unsubscribe(self)


class JobFeed:
    def __init__(
        self,
        changes: Changes,
        clock: Clock,
        *,
        interval: float = 0.1,
        overlap_ms: int = 2000,
        batch: int = 1000,
        retry_seconds: float = 1.0,
    ) -> None:
        self._changes = changes
        self._clock = clock
        self.interval = interval
        self.overlap_ms = overlap_ms
        self.batch = batch
        self.retry_seconds = retry_seconds
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._newest = 0  # the newest revision seen; 0: not polled yet
        self._told: dict[str, int] = {}  # job id -> revision last told, for revisions inside the overlap
        self.polls = 0

    # -- subscribers ------------------------------------------------------------------------------
    def subscribe(self, callback: Callback) -> Subscription:
        subscription = Subscription(self, callback)
        with self._lock:
            if self._closed:
                raise RuntimeError("the job feed is closed")
            self._subscribers.add(subscription)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="nbjobs-job-feed", daemon=True)
                self._thread.start()
            self._lock.notify_all()
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    @property
    def closed(self) -> bool:
        return self._closed

    def cursor(self) -> int:
        """The newest revision the feed has seen (the clock when it has not polled yet): where a
        subscriber that starts now begins."""
        return self._newest or self._clock()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    # -- the poller -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._subscribers and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
            try:
                self.poll()
            except StoreUnavailable as exc:
                log.warning("job feed: the database is unavailable (%s); retrying", exc.__cause__ or exc)
                self._sleep(self.retry_seconds)
                continue
            except Exception:  # a bug must not end every stream of the process: log, go on
                log.exception("job feed: poll failed")
                self._sleep(self.retry_seconds)
                continue
            self._sleep(self.interval)

    def _sleep(self, seconds: float) -> None:
        with self._lock:
            if not self._closed:
                self._lock.wait(seconds)

    def poll(self) -> list[JobChange]:
        """One round: the changes not told yet, given to every subscriber; returns them."""
        since = (self._newest or self._clock()) - self.overlap_ms
        fresh: list[JobChange] = []
        while True:
            found = list(self._changes(since, self.batch))
            for change in found:
                if self._told.get(change.job_id) != change.revision:
                    self._told[change.job_id] = change.revision
                    fresh.append(change)
                self._newest = max(self._newest, change.revision)
            if len(found) < self.batch:
                break
            since = found[-1].revision  # more than a batch inside the window: page on
        self._newest = self._newest or since + self.overlap_ms
        floor = self._newest - self.overlap_ms
        self._told = {job: rev for job, rev in self._told.items() if rev >= floor}
        self.polls += 1
        if fresh:
            with self._lock:
                subscribers = list(self._subscribers)
            for subscription in subscribers:
                try:
                    subscription.callback(fresh)
                except Exception:
                    log.exception("job feed: a subscriber failed")
        return fresh
