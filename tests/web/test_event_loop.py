"""Blocking work (database, argon2) runs off the event loop: one slow request never stalls the others.

The server is one process with one event loop; a handler that called the database inside it made
every other request queue behind it (seen in bench/load.py as p99 list latencies of seconds).
"""

from __future__ import annotations

import asyncio
import time

import httpx

from nbjobs.web.app import create_app

from .conftest import CTX


def test_a_slow_token_check_does_not_hold_up_other_requests(nb, admin):
    real = nb.tokens.authenticate

    def slow_authenticate(token):
        time.sleep(1.5)  # a slow database, or a lock held by a writer
        return real(token)

    nb.tokens.authenticate = slow_authenticate
    app = create_app(nb.web)

    async def both() -> tuple[float, float, int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
            started = time.monotonic()

            async def slow() -> tuple[float, int]:
                params = {"f": "json", "token": admin.token}
                answer = await http.get(CTX + "/admin/notebooks/jobs", params=params)
                return time.monotonic() - started, answer.status_code

            async def quick() -> tuple[float, int]:
                await asyncio.sleep(0.2)  # the slow one is inside its token check by now
                answer = await http.get(CTX + "/sharing/rest/info", params={"f": "json"})
                return time.monotonic() - started, answer.status_code

            (slow_s, slow_code), (quick_s, quick_code) = await asyncio.gather(slow(), quick())
            return slow_s, quick_s, slow_code, quick_code

    slow_s, quick_s, slow_code, quick_code = asyncio.run(both())
    assert slow_code == quick_code == 200
    assert slow_s >= 1.5
    assert quick_s < 1.2, f"the quick request waited {quick_s:.2f}s behind the slow one"
