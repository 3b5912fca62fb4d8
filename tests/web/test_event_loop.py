"""Blocking work (database, argon2) runs off the event loop: one slow request never stalls the others.

The server is one process with one event loop; a handler that called the database inside it made
every other request queue behind it (seen in bench/load.py as p99 list latencies of seconds).
"""

from __future__ import annotations

import asyncio
import threading

import httpx

from nbjobs.web.app import create_app

from .conftest import CTX


def test_a_slow_token_check_does_not_hold_up_other_requests(nb, admin):
    real = nb.tokens.authenticate
    entered, release = threading.Event(), threading.Event()

    def slow_authenticate(token):
        entered.set()
        # A slow database, or a lock held by a writer: held until the quick request is answered. Run on
        # the event loop, it would hold the loop too, the quick one could not be answered meanwhile, and
        # the slow one would go first once this gives up.
        release.wait(30)
        return real(token)

    nb.tokens.authenticate = slow_authenticate
    app = create_app(nb.web)
    answered: list[str] = []

    async def both() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:

            async def slow() -> int:
                params = {"f": "json", "token": admin.token}
                answer = await http.get(CTX + "/admin/notebooks/jobs", params=params)
                answered.append("slow")
                return answer.status_code

            async def quick() -> int:
                for _ in range(6000):  # until the slow one is inside its token check (up to 60 s)
                    if entered.is_set():
                        break
                    await asyncio.sleep(0.01)
                assert entered.is_set(), "the slow request never reached its token check"
                answer = await http.get(CTX + "/sharing/rest/info", params={"f": "json"})
                answered.append("quick")
                release.set()
                return answer.status_code

            slow_code, quick_code = await asyncio.gather(slow(), quick())
            return slow_code, quick_code

    slow_code, quick_code = asyncio.run(both())
    assert slow_code == quick_code == 200
    assert answered == ["quick", "slow"], "the quick request waited behind the slow one"
