"""The exact readiness check: one kernel_info round trip and proof that IOPub is subscribed.

The channels are stand-ins (this tests the check's logic, one layer); the real kernels of every job go
through it in the integration and end-to-end tests.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from queue import Empty
from typing import Any

import pytest
import zmq

from nbjobs.execution import ready_client
from nbjobs.execution.ready_client import ReadyClient


class Channel:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.waited = 0.0

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message, waiting up to ``timeout`` for one (and letting others run meanwhile)."""
        end = time.monotonic() + (timeout or 0)
        while not self.messages:
            if time.monotonic() >= end:
                self.waited += timeout or 0
                raise Empty
            await asyncio.sleep(0.001)
        return self.messages.pop(0)


def message(msg_type: str, parent: str = "", **content: Any) -> dict[str, Any]:
    return {"msg_type": msg_type, "parent_header": {"msg_id": parent} if parent else {}, "content": content}


class Client(ReadyClient):
    """A ReadyClient whose channels and requests are the stand-ins above."""

    def __init__(self, shell: list[dict[str, Any]], iopub: list[dict[str, Any]]) -> None:
        super().__init__()
        self.ids = (f"req-{n}" for n in itertools.count(1))
        self.requests: list[str] = []
        self._shell, self._iopub = Channel(shell), Channel(iopub)

    @property
    def shell_channel(self) -> Channel:
        return self._shell

    @property
    def iopub_channel(self) -> Channel:
        return self._iopub

    def kernel_info(self) -> str:
        self.requests.append(next(self.ids))
        return self.requests[-1]

    async def _async_is_alive(self) -> bool:
        return True

    def _handle_kernel_info_reply(self, msg: dict[str, Any]) -> None:
        self.info = msg


def test_a_welcome_on_iopub_proves_the_subscription_without_waiting_for_an_idle() -> None:
    # ipykernel 7 welcomes the subscription (JEP 65); the idle of our request was published before it
    # and is lost. Without the welcome rule the check waits out IDLE_WAIT and asks again.
    client = Client(shell=[message("kernel_info_reply", "req-1")], iopub=[message("iopub_welcome")])
    asyncio.run(client.wait_for_ready(timeout=5))
    assert client.requests == ["req-1"]
    assert client.iopub_channel.waited == 0


def test_a_welcome_seen_before_the_reply_still_counts() -> None:
    # the first reply is lost (shell not yet connected); the welcome came meanwhile
    shell = [message("kernel_info_reply", "req-other"), message("kernel_info_reply", "req-2")]
    client = Client(shell=shell, iopub=[message("iopub_welcome")])
    asyncio.run(client.wait_for_ready(timeout=5))
    assert client.requests == ["req-1", "req-2"]
    assert client.info["parent_header"]["msg_id"] == "req-2"


def test_an_older_kernel_is_ready_on_the_idle_of_its_request() -> None:
    busy, idle = (message("status", "req-1", execution_state=state) for state in ("busy", "idle"))
    iopub = [busy, idle]
    client = Client(shell=[message("kernel_info_reply", "req-1")], iopub=iopub)
    asyncio.run(client.wait_for_ready(timeout=5))
    assert client.requests == ["req-1"]


def test_an_idle_of_someone_elses_request_proves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ready_client, "IDLE_WAIT", 0.01)
    client = Client(
        shell=[message("kernel_info_reply", "req-1"), message("kernel_info_reply", "req-2")],
        iopub=[message("status", "not-ours", execution_state="idle")],
    )
    asyncio.run(_ready_after_second(client))
    assert client.requests == ["req-1", "req-2"]


async def _ready_after_second(client: Client) -> None:
    async def late_idle() -> None:
        while len(client.requests) < 2:
            await asyncio.sleep(0.001)
        client._iopub.messages.append(message("status", "req-2", execution_state="idle"))

    waiter = asyncio.ensure_future(late_idle())
    await client.wait_for_ready(timeout=5)
    await waiter


def test_sockets_try_to_reconnect_soon_to_a_kernel_still_binding() -> None:
    # a forked kernel binds ~40 ms after its fork; ZMQ's default retry of 100 ms made it 150-250 ms
    client = ReadyClient()
    sock = client.context.socket(zmq.SUB)
    try:
        assert sock.getsockopt(zmq.RECONNECT_IVL) == ready_client.RECONNECT_IVL_MS
        assert sock.getsockopt(zmq.RECONNECT_IVL_MAX) == ready_client.RECONNECT_IVL_MAX_MS
    finally:
        sock.close(linger=0)
        client.context.term()
