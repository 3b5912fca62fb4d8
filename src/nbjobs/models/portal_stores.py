"""What each store of the portal's records must do: accounts and tokens, items, and what users define
on them (tasks, webhook receivers, web tools, notification rules). The job and system stores are in
``stores.py``. store/ (SQL) and store/memory/ implement both; tests/unit/contracts/ holds each pair
to one suite.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, Protocol

from nbjobs.models.accounts import Token, User
from nbjobs.models.automation import Delivery, Firing, Receiver, RunStatus, Task, TaskRun, TaskState
from nbjobs.models.items import Item, Snapshot, Upload
from nbjobs.models.notifications import Attempt, DeliveryStatus, Rule, Watch
from nbjobs.models.notifications import Delivery as NotificationDelivery
from nbjobs.models.webtools import WebTool, WebToolCall


class UserStore(Protocol):
    def add(self, user: User) -> None:
        """Insert a new user; UserExists if the name is taken."""

    def get(self, username: str) -> User | None:
        """The user (names compare case-insensitively, as in ArcGIS), or None."""

    def list(self) -> list[User]:
        """All users, by name."""

    def save(self, user: User) -> None:
        """Replace the stored fields of an existing user."""

    def count(self) -> int:
        """How many users exist."""


class TokenStore(Protocol):
    def add(self, token: Token) -> None:
        """Record an issued token."""

    def get(self, token_hash: str) -> Token | None:
        """The token with this hash, or None."""

    def revoke(self, token_hash: str) -> bool:
        """Mark one token revoked; False if unknown."""

    def revoke_user(self, username: str) -> int:
        """Revoke every token of a user; returns how many."""

    def delete_expired(self, now: int) -> int:
        """Forget tokens that expired before ``now``."""


class ItemStore(Protocol):
    def add(self, item: Item, data: bytes) -> None:
        """Insert an item and its data in one transaction."""

    def get(self, item_id: str) -> Item | None:
        """The item, or None."""

    def get_data(self, item_id: str) -> bytes | None:
        """The item's file, or None."""

    def save(self, item: Item, data: bytes | None = None) -> None:
        """Replace an item's metadata, and its data when ``data`` is given."""

    def delete(self, item_id: str) -> bool:
        """Delete an item; False if it did not exist."""

    def list(self, owner: str | None = None) -> list[Item]:
        """Items, newest first, optionally of one owner."""

    def add_pending_update(self, job_id: str, item_id: str, now: int) -> None:
        """Remember that ``job_id``'s executed notebook should be written back to ``item_id``."""

    def pending_updates(self) -> builtins.list[tuple[str, str]]:
        """(job_id, item_id) pairs still to write back."""

    def drop_pending_update(self, job_id: str) -> None:
        """Forget a pending write-back (done, or its job can no longer produce one)."""

    def add_upload(self, upload: Upload) -> None:
        """Start an upload in parts."""

    def get_upload(self, item_id: str) -> Upload | None:
        """The upload, or None."""

    def put_part(self, item_id: str, part_num: int, data: bytes) -> bool:
        """Store one part, replacing a part of the same number; False if the upload no longer exists."""

    def part_sizes(self, item_id: str) -> dict[int, int]:
        """Part number -> size in bytes of an upload's parts."""

    def upload_data(self, item_id: str) -> bytes:
        """The parts joined in part-number order."""

    def finish_upload(self, item: Item, data: bytes) -> bool:
        """In one transaction, drop the upload ``item.item_id`` and its parts and add the item; False (and
        nothing changed) if the upload no longer exists."""

    def drop_upload(self, item_id: str) -> None:
        """Delete an upload and its parts."""

    def drop_uploads_before(self, created: int) -> int:
        """Delete uploads started before ``created`` (abandoned), with their parts; how many."""


class SnapshotStore(Protocol):
    """The kept versions of items; an item's snapshots go with it when it is deleted."""

    def add(self, snapshot: Snapshot, data: bytes) -> None:
        """Insert a snapshot and its notebook; refused (as a duplicate key) for an unknown item."""

    def get(self, item_id: str, resource_key: str) -> Snapshot | None:
        """The item's snapshot with this key, or None."""

    def get_data(self, item_id: str, resource_key: str) -> bytes | None:
        """The snapshot's notebook, or None."""

    def list(self, item_id: str) -> list[Snapshot]:
        """The item's snapshots, newest first (the later of two made in the same millisecond first)."""

    def delete(self, item_id: str, resource_keys: Sequence[str]) -> int:
        """Delete these snapshots of the item in one transaction; how many went."""


class TaskStore(Protocol):
    def add(self, task: Task) -> None:
        """Insert a new task."""

    def get(self, task_id: str) -> Task | None:
        """The task, or None."""

    def save(self, task: Task) -> None:
        """Replace a task's definition and state (not its counters, which the scheduler owns)."""

    def delete(self, task_id: str) -> bool:
        """Delete a task and its runs; False if it did not exist."""

    def list(
        self,
        owner: str | None = None,
        *,
        item_id: str | None = None,
        states: frozenset[TaskState] | None = None,
    ) -> list[Task]:
        """Tasks, oldest first, filtered by owner, item and state."""

    def count_active(self, owner: str) -> int:
        """How many active tasks ``owner`` has."""

    def due(self, now: int, limit: int = 100) -> builtins.list[Task]:
        """Active tasks whose next fire time has come."""

    def fire(self, task_id: str, expected_next_fire: int, firing: Firing) -> bool:
        """Advance the task from ``expected_next_fire`` and insert the occasion's run, atomically; False
        when another scheduler got there first (the task moved on, or the occasion already has a run)."""

    def runs(self, task_id: str, limit: int = 30) -> builtins.list[TaskRun]:
        """The task's runs, newest first."""

    def get_run(self, run_id: str) -> TaskRun | None:
        """The run, or None."""

    def open_runs(self, task_id: str | None = None, limit: int = 500) -> builtins.list[TaskRun]:
        """Runs still scheduled or executing (of one task, or all), oldest occasion first."""

    def update_run(
        self,
        run_id: str,
        now: int,
        *,
        status: RunStatus | None = None,
        result: str | None = None,
        job_id: str | None = None,
        expected: frozenset[RunStatus] | None = None,
    ) -> TaskRun | None:
        """Change a run if its status is in ``expected`` (any when None); the new run, or None."""

    def finish_run(
        self, run_id: str, status: RunStatus, result: str, now: int, *, max_failures: int
    ) -> TaskRun | None:
        """End an open run and count the outcome on its task (a success resets the failure streak;
        ``max_failures`` in a row fail the task). None if the run was not open (someone else ended it)."""

    def delete_run(self, run_id: str) -> bool:
        """Delete a run; False if it did not exist."""


class ReceiverStore(Protocol):
    def add(self, receiver: Receiver) -> None:
        """Insert a new receiver."""

    def get(self, receiver_id: str) -> Receiver | None:
        """The receiver, or None."""

    def list(self) -> list[Receiver]:
        """All receivers, oldest first."""

    def save(self, receiver: Receiver) -> None:
        """Replace a receiver."""

    def delete(self, receiver_id: str) -> bool:
        """Delete a receiver and its delivery log; False if it did not exist."""

    def log(self, delivery: Delivery) -> None:
        """Append to a receiver's delivery log (keeping the newest ``DELIVERIES_KEPT``)."""

    def deliveries(self, receiver_id: str, limit: int = 100) -> builtins.list[Delivery]:
        """The receiver's deliveries, newest first."""


class WebToolStore(Protocol):
    def add(self, tool: WebTool, snapshot: bytes) -> bool:
        """Insert a tool and its snapshot; False if its name or its notebook already has one."""

    def get(self, service_name: str) -> WebTool | None:
        """The tool, or None."""

    def by_notebook(self, notebook_id: str) -> WebTool | None:
        """The tool published from this notebook, or None."""

    def list(self, owner: str | None = None, *, limit: int = 100, offset: int = 0) -> list[WebTool]:
        """Tools, oldest first, optionally of one owner."""

    def count(self, owner: str | None = None) -> int:
        """How many tools ``list`` would page through."""

    def snapshot(self, service_name: str) -> bytes | None:
        """The notebook as it was published (or last edited)."""

    def save(self, tool: WebTool, snapshot: bytes | None = None) -> None:
        """Replace a tool, and its snapshot when given."""

    def delete(self, service_name: str) -> bool:
        """Delete a tool and its call records; False if it did not exist."""

    def add_call(self, call: WebToolCall) -> None:
        """Record the job a call started."""

    def get_call(self, job_id: str) -> WebToolCall | None:
        """The call that started this job, or None."""

    def delete_calls(self, created_before: int) -> int:
        """Forget calls older than ``created_before`` (their jobs are purged by then); returns how many."""


class NotificationStore(Protocol):
    """Notification rules (of jobs, tasks, web tools), the watches of jobs with rules, the delivery outbox
    (one row per job, rule and event: the unique key that makes enqueueing idempotent) and its attempts."""

    def set_rules(self, scope: str, rules: tuple[Rule, ...], now: int) -> None:
        """Keep ``rules`` for ``scope`` (``task:<id>``, ``webtool:<name>``); an empty tuple forgets them."""

    def rules(self, scope: str) -> tuple[Rule, ...]:
        """The rules kept for ``scope``; empty when none."""

    def watch(self, job_id: str, username: str, rules: tuple[Rule, ...], now: int) -> None:
        """Start watching a job for its rules' events (once: a second call for the job is ignored)."""

    def watches(self, limit: int = 500, after: tuple[int, str] | None = None) -> builtins.list[Watch]:
        """Watches not done, oldest first (by created, then job id), after the key ``after``."""

    def watch_of(self, job_id: str) -> Watch | None:
        """The job's watch, done or not, or None."""

    def fire(
        self,
        job_id: str,
        deliveries: builtins.list[NotificationDelivery],
        fired: frozenset[str],
        done: bool,
        seen: str = "",
    ) -> int:
        """In one transaction: insert each delivery unless its (job, rule, event) is already in the outbox,
        and record ``fired``, ``done`` and (when given) ``seen`` on the watch. Returns how many were new."""

    def due(self, now: int, limit: int = 50) -> builtins.list[NotificationDelivery]:
        """Pending deliveries whose next attempt is at or before ``now``, earliest first."""

    def claim(self, delivery_id: str, seen_next_attempt_at: int, until: int) -> bool:
        """Take a due delivery for one sender: move its next attempt to ``until`` if it is still pending
        at ``seen_next_attempt_at`` (a compare-and-set, so two senders never take the same attempt)."""

    def record(
        self,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: int,
        last_error: str,
    ) -> None:
        """Append an attempt to the log and update its delivery (attempts + 1, status, next attempt)."""

    def deliveries(self, job_id: str) -> builtins.list[NotificationDelivery]:
        """The job's deliveries, oldest first."""

    def recent(
        self, *, status: DeliveryStatus | None = None, limit: int = 100
    ) -> builtins.list[NotificationDelivery]:
        """Deliveries of every job, newest first, optionally of one status."""

    def attempts(self, delivery_id: str) -> builtins.list[Attempt]:
        """A delivery's attempts, first first."""

    def get_config(self, name: str) -> dict[str, Any] | None:
        """A stored notification setting (``smtp``, ``allowlist``), or None."""

    def put_config(self, name: str, value: dict[str, Any], now: int) -> None:
        """Store a notification setting."""

    def purge(self, before: int) -> int:
        """Forget done watches and finished deliveries (with their attempts) last changed before
        ``before``; returns how many deliveries went."""
