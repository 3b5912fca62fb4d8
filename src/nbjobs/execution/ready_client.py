"""A kernel client that knows the kernel is ready as soon as it is, not 200 ms later.

jupyter_client's ``wait_for_ready`` ends with a loop that drains IOPub until 200 ms pass without a
message: a fixed cost on every job (measured in shared/reference/perf-baseline.md). Here readiness is
proven directly instead: the shell channel answered our ``kernel_info`` request and IOPub delivered
the idle status *of that same request*, so both channels are connected. Messages left on IOPub
belong to other requests and nbclient ignores them by parent id.
"""

from __future__ import annotations

import time
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient

# After our kernel_info reply, its idle status follows on IOPub within milliseconds -- unless IOPub was
# not yet subscribed when the kernel published it (a kernel still booting when the client connected).
# Then no idle will ever come for that request: ask again soon rather than after a second.
IDLE_WAIT = 0.1


class ReadyClient(AsyncKernelClient):
    """AsyncKernelClient with an exact, flush-free readiness check."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        # Every request sent so far counts: a kernel slower than a second to start answers them late
        # and in order, and matching only the newest would keep us one reply behind forever.
        sent: set[str] = set()
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
                and await self._idle_seen(sent, timeout=IDLE_WAIT)
            ):
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")

    async def _idle_seen(self, sent: set[str], timeout: float) -> bool:
        """True once IOPub carries the idle status of one of our requests (IOPub is subscribed)."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await self.iopub_channel.get_msg(timeout=left)
            except Empty:
                return False
            if (
                msg["parent_header"].get("msg_id") in sent
                and msg["msg_type"] == "status"
                and msg["content"].get("execution_state") == "idle"
            ):
                return True
        return False
