"""A kernel client that knows the kernel is ready as soon as it is, not 200 ms later.

jupyter_client's ``wait_for_ready`` ends with a loop that drains IOPub until 200 ms pass without a
message: a fixed cost on every job (measured in shared/reference/perf-baseline.md). Here readiness is
proven directly instead: the shell channel answered our ``kernel_info`` request, and IOPub delivered
a message, so both channels are connected. IOPub's proof is the kernel's ``iopub_welcome`` (ipykernel 7
publishes one on its XPUB socket the moment our subscription reaches it, JEP 65) or the idle status of
one of our requests (older kernels). Messages left on IOPub belong to other requests (the welcome has
no parent), and nbclient ignores them by parent id.
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient

# After our kernel_info reply, its idle status follows on IOPub within milliseconds -- unless IOPub was
# not yet subscribed when the kernel published it (a kernel still booting when the client connected).
# Then no idle will ever come for that request: ask again soon rather than after a second. A kernel that
# sends ``iopub_welcome`` ends the wait the moment the subscription is through.
IDLE_WAIT = 0.1
# A client connecting to a kernel that is still booting finds no socket yet: ZMQ tries again after
# RECONNECT_IVL (100 ms by default, so a forked kernel that binds 40 ms later was reached 100-200 ms
# late). Here it tries after 5 ms, backing off to 100 ms for a kernel that takes longer.
RECONNECT_IVL_MS = 5
RECONNECT_IVL_MAX_MS = 100


class ReadyClient(AsyncKernelClient):
    """AsyncKernelClient with an exact, flush-free readiness check."""

    _iopub_subscribed = False

    def _context_default(self) -> zmq.asyncio.Context:
        context = super()._context_default()
        context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)  # applies to every socket made from it
        context.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        return context

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        # Every request sent so far counts: a kernel slower than a second to start answers them late
        # and in order, and matching only the newest would keep us one reply behind forever.
        sent: set[str] = set()
        self._iopub_subscribed = False
        while True:
            sent.add(self.kernel_info())
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if (
                reply is not None
                and reply["msg_type"] == "kernel_info_reply"
                and reply["parent_header"].get("msg_id") in sent
                and await self._iopub_ready(sent, timeout=IDLE_WAIT)
            ):
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")

    async def _iopub_ready(self, sent: set[str], timeout: float) -> bool:
        """True once IOPub is known subscribed: a welcome seen (now or earlier), or the idle status of
        one of our requests."""
        end = time.monotonic() + timeout
        while not self._iopub_subscribed:
            try:  # what is already queued first: a welcome that came before the shell's reply
                msg = await self.iopub_channel.get_msg(timeout=max(end - time.monotonic(), 0))
            except Empty:
                return False
            if _proves_subscription(msg, sent):
                self._iopub_subscribed = True
        return True


def _proves_subscription(msg: dict[str, Any], sent: set[str]) -> bool:
    if msg["msg_type"] == "iopub_welcome":
        return True
    return (
        msg["parent_header"].get("msg_id") in sent
        and msg["msg_type"] == "status"
        and msg["content"].get("execution_state") == "idle"
    )
