"""Web tools and their calls: records, the store protocol and the SQL implementation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nbjobs.models.jobs import NO_RETRIES, RetryPolicy
from nbjobs.models.webtools import WebTool, WebToolCall
from nbjobs.store.tables import webtool_calls, webtools


def _tool_from_row(row: Any) -> WebTool:
    m = row._mapping
    return WebTool(
        service_name=m["service_name"],
        owner=m["owner"],
        notebook_id=m["notebook_id"],
        title=m["title"],
        task_name=m["task_name"],
        created=m["created"],
        modified=m["modified"],
        description=m["description"],
        access=m["access"],
        params=m["params"] or {},
        runtime_id=m["runtime_id"],
        snapshot_id=m["snapshot_id"],
        retry=RetryPolicy.from_wire(m["retry_policy"]),
    )


def _tool_row(t: WebTool) -> dict[str, Any]:
    return {
        "service_name": t.service_name,
        "owner": t.owner,
        "notebook_id": t.notebook_id,
        "title": t.title,
        "description": t.description,
        "task_name": t.task_name,
        "access": t.access,
        "retry_policy": t.retry.to_wire() if t.retry != NO_RETRIES else None,
        "params": t.params,
        "runtime_id": t.runtime_id,
        "snapshot_id": t.snapshot_id,
        "created": t.created,
        "modified": t.modified,
    }


_META = [c for c in webtools.c if c.name != "snapshot"]


class SqlWebToolStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, tool: WebTool, snapshot: bytes) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(webtools).values(**_tool_row(tool), snapshot=snapshot))
        except IntegrityError:
            return False
        return True

    def _one(self, where: Any) -> WebTool | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_META).where(where)).first()
        return _tool_from_row(row) if row else None

    def get(self, service_name: str) -> WebTool | None:
        return self._one(webtools.c.service_name == service_name)

    def by_notebook(self, notebook_id: str) -> WebTool | None:
        return self._one(webtools.c.notebook_id == notebook_id)

    def list(self, owner: str | None = None, *, limit: int = 100, offset: int = 0) -> list[WebTool]:
        stmt = select(*_META).order_by(webtools.c.created, webtools.c.service_name)
        if owner is not None:
            stmt = stmt.where(webtools.c.owner == owner)
        with self.engine.connect() as conn:
            return [_tool_from_row(r) for r in conn.execute(stmt.limit(limit).offset(offset))]

    def count(self, owner: str | None = None) -> int:
        stmt = select(func.count()).select_from(webtools)
        if owner is not None:
            stmt = stmt.where(webtools.c.owner == owner)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def snapshot(self, service_name: str) -> bytes | None:
        stmt = select(webtools.c.snapshot).where(webtools.c.service_name == service_name)
        with self.engine.connect() as conn:
            data = conn.execute(stmt).scalar_one_or_none()
        return bytes(data) if data is not None else None

    def save(self, tool: WebTool, snapshot: bytes | None = None) -> None:
        values = _tool_row(tool)
        del values["service_name"]
        if snapshot is not None:
            values["snapshot"] = snapshot
        stmt = update(webtools).where(webtools.c.service_name == tool.service_name).values(**values)
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def delete(self, service_name: str) -> bool:
        with self.engine.begin() as conn:
            conn.execute(delete(webtool_calls).where(webtool_calls.c.service_name == service_name))
            return conn.execute(delete(webtools).where(webtools.c.service_name == service_name)).rowcount == 1

    def add_call(self, call: WebToolCall) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(webtool_calls).values(
                    job_id=call.job_id,
                    service_name=call.service_name,
                    task_name=call.task_name,
                    inputs=call.inputs,
                    created=call.created,
                )
            )

    def get_call(self, job_id: str) -> WebToolCall | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(webtool_calls).where(webtool_calls.c.job_id == job_id)).first()
        if row is None:
            return None
        m = row._mapping
        return WebToolCall(m["job_id"], m["service_name"], m["task_name"], m["inputs"] or {}, m["created"])

    def delete_calls(self, created_before: int) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                delete(webtool_calls).where(webtool_calls.c.created < created_before)
            ).rowcount
