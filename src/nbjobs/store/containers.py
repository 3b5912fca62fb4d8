"""Interactive notebooks' records: each user's Jupyter servers and the notebooks open in them.

One live server per user and runtime is the database's rule, not a lock's: ``live_key`` is unique and
set only while a container is live, so two API servers opening at once cannot start two.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nbjobs.models.interactive import LIVE_CONTAINER, Container, ContainerStatus, OpenNotebook
from nbjobs.store.tables import lab_containers as c_table
from nbjobs.store.tables import lab_notebooks as n_table


def _live_key(username: str, runtime_id: str) -> str:
    return f"{username}/{runtime_id}"


class SqlContainerStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- containers -----------------------------------------------------------------------------------
    def add(self, container: Container) -> bool:
        """Insert a live container; False when its user already has a live one for that runtime."""
        row = _container_row(container)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(c_table).values(**row))
        except IntegrityError:
            return False
        return True

    def get(self, container_id: str) -> Container | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(c_table).where(c_table.c.container_id == container_id)).first()
        return _container(row) if row is not None else None

    def live_for(self, username: str, runtime_id: str) -> Container | None:
        stmt = select(c_table).where(c_table.c.live_key == _live_key(username, runtime_id))
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return _container(row) if row is not None else None

    def update(
        self,
        container_id: str,
        *,
        expected: Iterable[ContainerStatus] | None = None,
        status: ContainerStatus | None = None,
        **values: Any,
    ) -> Container | None:
        """Change a container (only from an ``expected`` status, when given); None when nothing matched.
        Leaving the live statuses frees its user's slot for that runtime."""
        changes = dict(values)
        if status is not None:
            changes["status"] = str(status)
            if status not in LIVE_CONTAINER:
                changes["live_key"] = None
        stmt = update(c_table).where(c_table.c.container_id == container_id)
        if expected is not None:
            stmt = stmt.where(c_table.c.status.in_([str(s) for s in expected]))
        with self.engine.begin() as conn:
            if not conn.execute(stmt.values(**changes)).rowcount:
                return None
            row = conn.execute(select(c_table).where(c_table.c.container_id == container_id)).first()
        return _container(row) if row is not None else None

    def list(
        self,
        *,
        username: str | None = None,
        node: str | None = None,
        statuses: Iterable[ContainerStatus] | None = None,
    ) -> builtins.list[Container]:
        stmt = select(c_table).order_by(c_table.c.created, c_table.c.container_id)
        if username is not None:
            stmt = stmt.where(c_table.c.username == username)
        if node is not None:
            stmt = stmt.where(c_table.c.node == node)
        if statuses is not None:
            stmt = stmt.where(c_table.c.status.in_([str(s) for s in statuses]))
        with self.engine.connect() as conn:
            return [_container(r) for r in conn.execute(stmt)]

    def count_live(self, *, node: str | None = None) -> int:
        stmt = select(func.count()).select_from(c_table).where(c_table.c.live_key.is_not(None))
        if node is not None:
            stmt = stmt.where(c_table.c.node == node)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def touch(self, container_id: str, now: int) -> None:
        """Record activity (never moves it back)."""
        stmt = (
            update(c_table)
            .where(and_(c_table.c.container_id == container_id, c_table.c.last_activity < now))
            .values(last_activity=now)
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)
            conn.execute(
                update(n_table)
                .where(and_(n_table.c.container_id == container_id, n_table.c.closed == 0))
                .where(n_table.c.last_activity < now)
                .values(last_activity=now)
            )

    # -- notebooks ------------------------------------------------------------------------------------
    def add_notebook(self, notebook: OpenNotebook) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(n_table).values(**_notebook_row(notebook)))

    def get_notebook(self, notebook_id: str) -> OpenNotebook | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(n_table).where(n_table.c.notebook_id == notebook_id)).first()
        return _notebook(row) if row is not None else None

    def open_notebook_of(self, container_id: str, item_id: str) -> OpenNotebook | None:
        stmt = select(n_table).where(
            and_(n_table.c.container_id == container_id, n_table.c.item_id == item_id, n_table.c.closed == 0)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return _notebook(row) if row is not None else None

    def notebooks(
        self,
        *,
        username: str | None = None,
        container_id: str | None = None,
        open_only: bool = True,
        limit: int = 1000,
        offset: int = 0,
    ) -> builtins.list[OpenNotebook]:
        stmt = self._where(select(n_table), username, container_id, open_only)
        stmt = stmt.order_by(n_table.c.opened, n_table.c.notebook_id).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_notebook(r) for r in conn.execute(stmt)]

    def count_notebooks(
        self, *, username: str | None = None, container_id: str | None = None, open_only: bool = True
    ) -> int:
        stmt = self._where(select(func.count()).select_from(n_table), username, container_id, open_only)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    @staticmethod
    def _where(stmt: Any, username: str | None, container_id: str | None, open_only: bool) -> Any:
        if username is not None:
            stmt = stmt.where(n_table.c.username == username)
        if container_id is not None:
            stmt = stmt.where(n_table.c.container_id == container_id)
        if open_only:
            stmt = stmt.where(n_table.c.closed == 0)
        return stmt

    def close_notebook(self, notebook_id: str, now: int, reason: str) -> bool:
        """Mark an open notebook closed; False when it was closed already (or is unknown)."""
        stmt = (
            update(n_table)
            .where(and_(n_table.c.notebook_id == notebook_id, n_table.c.closed == 0))
            .values(closed=now, reason=reason)
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def close_notebooks_of(self, container_id: str, now: int, reason: str) -> int:
        stmt = (
            update(n_table)
            .where(and_(n_table.c.container_id == container_id, n_table.c.closed == 0))
            .values(closed=now, reason=reason)
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount


def _container_row(c: Container) -> dict[str, Any]:
    return {
        "container_id": c.container_id,
        "username": c.username,
        "runtime_id": c.runtime_id,
        "node": c.node,
        "status": str(c.status),
        "live_key": _live_key(c.username, c.runtime_id) if c.live else None,
        "address": c.address,
        "token": c.token,
        "pid": c.pid,
        "pid_started": c.pid_started,
        "created": c.created,
        "last_activity": c.last_activity,
        "ended": c.ended,
        "reason": c.reason,
    }


def _container(r: Any) -> Container:
    m = r._mapping
    return Container(
        container_id=m["container_id"],
        username=m["username"],
        runtime_id=m["runtime_id"],
        node=m["node"],
        status=ContainerStatus(m["status"]),
        created=m["created"],
        last_activity=m["last_activity"],
        address=m["address"],
        token=m["token"],
        pid=m["pid"],
        pid_started=m["pid_started"],
        ended=m["ended"],
        reason=m["reason"],
    )


def _notebook_row(n: OpenNotebook) -> dict[str, Any]:
    return {
        "notebook_id": n.notebook_id,
        "container_id": n.container_id,
        "item_id": n.item_id,
        "username": n.username,
        "path": n.path,
        "job_id": n.job_id,
        "opened": n.opened,
        "last_activity": n.last_activity,
        "closed": n.closed,
        "reason": n.reason,
    }


def _notebook(r: Any) -> OpenNotebook:
    m = r._mapping
    return OpenNotebook(
        notebook_id=m["notebook_id"],
        container_id=m["container_id"],
        item_id=m["item_id"],
        username=m["username"],
        path=m["path"],
        opened=m["opened"],
        last_activity=m["last_activity"],
        job_id=m["job_id"],
        closed=m["closed"],
        reason=m["reason"],
    )
