"""How fast a job's change reaches an event-stream subscriber (issue 14: within 250 ms on this machine).

    .venv/bin/python bench/streams.py [--runs 30]

One `nbjobs serve` (1 worker, warm pool 1). A job-list stream is open the whole time; each run submits
a trivial job with a per-job stream opened right after the submit, and waits for COMPLETED on it.
For every event, delay = the moment this process read it minus the job's ``revision`` (the epoch ms
the server wrote that change with; same machine, same clock). Also: submit → COMPLETED as a client
following the job's stream sees it, beside polling the job every 10 ms (the latency bench's way).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import Server, summary, trivial_notebook


def _events(http: httpx.Client, url: str, token: str, on_event, stop: threading.Event) -> None:
    with http.stream("GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=None) as answer:
        name = ""
        for line in answer.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event:"):
                name = line[6:].strip()
            elif (
                line.startswith("data:") and on_event(name, json.loads(line[5:]), time.time() * 1000) is False
            ):
                return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server.start(Path(tmp), workers=1, pool=1)
        try:
            item = server.add_notebook(trivial_notebook(), "bench")
            server.run_job(item)  # imports, caches
            list_delays: list[float] = []
            stop = threading.Event()
            lister = server.another_client()

            def on_list(name: str, data: dict, at: float) -> None:
                if name == "job":
                    list_delays.append(at - data["revision"])

            threading.Thread(
                target=_events,
                args=(lister.http, server.url + "/admin/notebooks/jobs/events", server.token, on_list, stop),
                daemon=True,
            ).start()
            time.sleep(1)
            job_delays: list[float] = []
            streamed: list[float] = []
            polled: list[float] = []
            follower = server.another_client()
            for _ in range(args.runs):
                time.sleep(1.2)  # the pool refills: a warm job
                start = time.perf_counter()
                job_id = server.post(
                    "/admin/notebooks/executeNotebook", itemId=item, updatePortalItem="false"
                )["jobId"]

                def on_job(name: str, data: dict, at: float, start: float = start) -> bool:
                    if name == "job":
                        job_delays.append(at - data["revision"])
                        if data["status"] == "COMPLETED":
                            streamed.append(time.perf_counter() - start)
                    return name != "end"

                url = f"{server.url}/admin/notebooks/jobs/{job_id}/events"
                _events(follower.http, url, server.token, on_job, threading.Event())
                time.sleep(1.2)
                polled.append(server.run_job(item))
            stop.set()
        finally:
            server.stop()
    print(f"change -> subscriber, {args.runs} warm trivial jobs (ms)")
    print(f"{'what':44} {'n':>5} {'p50':>8} {'p95':>8} {'max':>8}")
    for label, values in (
        ("job-list stream: revision -> event read", list_delays),
        ("job stream: revision -> event read", job_delays),
    ):
        p50, p95, top = summary([v / 1000 for v in values])
        print(f"{label:44} {len(values):5d} {p50:8.1f} {p95:8.1f} {top:8.1f}")
    for label, values in (("submit -> COMPLETED, following the stream", streamed),
                          ("submit -> COMPLETED, polling every 10 ms", polled)):  # fmt: skip
        p50, p95, top = summary(values)
        print(f"{label:44} {len(values):5d} {p50:8.1f} {p95:8.1f} {top:8.1f}")


if __name__ == "__main__":
    main()
