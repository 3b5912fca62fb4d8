"""In-memory web tool store: the fake that passes the same contract tests as ``SqlWebToolStore``.

Tools and calls are copied in and out, as rows are, so no caller shares a ``params`` or ``inputs`` dict
with the store.
"""

from __future__ import annotations

import copy
import threading

from nbjobs.models.webtools import WebTool, WebToolCall
from nbjobs.store.memory.shared import refuse_taken


class MemoryWebToolStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tools: dict[str, WebTool] = {}
        self._snapshots: dict[str, bytes] = {}
        self._calls: dict[str, WebToolCall] = {}

    def add(self, tool: WebTool, snapshot: bytes) -> bool:
        with self._lock:
            taken = tool.service_name in self._tools or any(
                t.notebook_id == tool.notebook_id for t in self._tools.values()
            )
            if taken:
                return False
            self._tools[tool.service_name] = copy.deepcopy(tool)
            self._snapshots[tool.service_name] = bytes(snapshot)
            return True

    def get(self, service_name: str) -> WebTool | None:
        return copy.deepcopy(self._tools.get(service_name))

    def by_notebook(self, notebook_id: str) -> WebTool | None:
        return copy.deepcopy(next((t for t in self._tools.values() if t.notebook_id == notebook_id), None))

    def _ordered(self, owner: str | None) -> list[WebTool]:
        tools = [t for t in self._tools.values() if owner is None or t.owner == owner]
        return sorted(tools, key=lambda t: (t.created, t.service_name))

    def list(self, owner: str | None = None, *, limit: int = 100, offset: int = 0) -> list[WebTool]:
        return copy.deepcopy(self._ordered(owner)[offset : offset + limit])

    def count(self, owner: str | None = None) -> int:
        return len(self._ordered(owner))

    def snapshot(self, service_name: str) -> bytes | None:
        return self._snapshots.get(service_name)

    def save(self, tool: WebTool, snapshot: bytes | None = None) -> None:
        with self._lock:
            if tool.service_name not in self._tools:
                return
            others = (t.notebook_id for t in self._tools.values() if t.service_name != tool.service_name)
            refuse_taken(tool.notebook_id, others)  # SQL: the unique key on notebook_id
            self._tools[tool.service_name] = copy.deepcopy(tool)
            if snapshot is not None:
                self._snapshots[tool.service_name] = bytes(snapshot)

    def delete(self, service_name: str) -> bool:
        with self._lock:
            self._snapshots.pop(service_name, None)
            self._calls = {k: c for k, c in self._calls.items() if c.service_name != service_name}
            return self._tools.pop(service_name, None) is not None

    def add_call(self, call: WebToolCall) -> None:
        with self._lock:
            refuse_taken(call.job_id, self._calls)
            self._calls[call.job_id] = copy.deepcopy(call)

    def get_call(self, job_id: str) -> WebToolCall | None:
        return copy.deepcopy(self._calls.get(job_id))

    def delete_calls(self, created_before: int) -> int:
        with self._lock:
            old = [k for k, c in self._calls.items() if c.created < created_before]
            for k in old:
                del self._calls[k]
            return len(old)
