"""Live progress over the real HTTPS server: a job's live view and event stream while it runs, the job
list's stream, resume with Last-Event-ID, heartbeats, visibility, and streams a client drops."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field

import httpx
import psutil
import pytest

from tests.e2e.conftest import Server, Session

pytestmark = pytest.mark.kernel


@dataclass
class Event:
    name: str
    data: dict
    id: str | None
    at: float


@dataclass
class Stream:
    """Reads one SSE stream on a thread; ``events`` and ``comments`` fill as they arrive."""

    session: Session
    path: str
    headers: dict = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    status: int = 0
    content_type: str = ""
    body: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    response: httpx.Response | None = None

    def start(self) -> Stream:
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.session.token}", **self.headers}
        try:
            with self.session.http.stream("GET", self.session.base + self.path, headers=headers,
                                          timeout=httpx.Timeout(60, read=30)) as answer:  # fmt: skip
                self.response = answer
                self.status = answer.status_code
                self.content_type = answer.headers.get("content-type", "")
                if not self.content_type.startswith("text/event-stream"):
                    self.body = answer.read().decode()
                    return
                name, data, event_id = "message", "", None
                for line in answer.iter_lines():
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    elif line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif line.startswith("id:"):
                        event_id = line[3:].strip()
                    elif line == "" and data:
                        self.events.append(Event(name, json.loads(data), event_id, time.monotonic()))
                        name, data, event_id = "message", "", None
        except httpx.HTTPError:
            if self.response is None or not self.response.is_closed:
                raise
        finally:
            self.done.set()

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
        self.done.wait(10)

    def named(self, name: str) -> list[Event]:
        return [e for e in list(self.events) if e.name == name]

    def wait_for(self, predicate, timeout: float = 60) -> Event:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            events = list(self.events)
            for event in events[seen:]:
                if predicate(event):
                    return event
            seen = len(events)
            time.sleep(0.02)
        raise AssertionError(f"no such event in {timeout}s; got {[(e.name, e.data) for e in self.events]}")


def _submit(session: Session, item: str, **parameters: object) -> str:
    answer = session.post("/admin/notebooks/executeNotebook", itemId=item,
                          notebookParameters=json.dumps(parameters))  # fmt: skip
    assert answer.get("status") == "success", answer
    return answer["jobId"]


def _followed(events: list[Event], cell: int, name: str) -> str:
    """What a follower prints of one stream of one cell: each character once, by the ``end`` counters."""
    printed, end = "", 0
    for event in events:
        for tail in event.data.get("output", []):
            if (tail["cellIndex"], tail["name"]) == (cell, name) and tail["end"] > end:
                new = tail["end"] - end
                assert new <= len(tail["text"]), "this test's output is small: nothing may be dropped"
                printed += tail["text"][len(tail["text"]) - new :]
                end = tail["end"]
    return printed


def test_a_running_job_streams_its_cells_and_output_while_it_runs(alice: Session):
    item = alice.add_notebook("prints_slowly.ipynb")
    job_id = _submit(alice, item, steps=8, pause=0.4)
    stream = Stream(alice, f"/admin/notebooks/jobs/{job_id}/events").start()
    # cells: 0 markdown, 1 parameters, 2 the injected parameters, 3 the printing loop, 4 stderr
    loop, last = 3, 4
    # an intermediate state, seen while the job runs: some steps printed, not all, the loop cell executing
    middle = stream.wait_for(
        lambda e: e.name == "job" and e.data["status"] == "EXECUTING"
        and "step 2" in _followed([e], loop, "stdout") and "step 7" not in _followed([e], loop, "stdout")
    )  # fmt: skip
    cells = {c["cellIndex"]: c for c in middle.data["cells"]}
    assert cells[1]["state"] == cells[2]["state"] == "completed" and cells[loop]["state"] == "executing"
    assert last not in cells
    assert middle.data["codeCells"] == 4 and middle.data["progress"]["cellIndex"] == loop
    live = alice.get(f"/admin/notebooks/jobs/{job_id}/live")  # the snapshot reads the same store
    assert live["jobId"] == job_id and live["status"] in {"EXECUTING", "COMPLETED"}
    assert stream.done.wait(60)
    assert stream.status == 200 and stream.content_type.startswith("text/event-stream")
    jobs = stream.named("job")
    assert jobs[-1].data["status"] == "COMPLETED" and jobs[-1].id == str(jobs[-1].data["revision"])
    assert [e.name for e in stream.events][-1] == "end" and stream.events[-1].data == {"status": "COMPLETED"}
    assert _followed(jobs, loop, "stdout") == "".join(f"step {i}\n" for i in range(8))  # in order, once each
    assert _followed(jobs, last, "stderr") == "done\n"
    assert [c["state"] for c in jobs[-1].data["cells"]] == ["completed"] * 4
    assert jobs[-1].data["cells"][2]["durationMs"] >= 8 * 400 - 100
    revisions = [int(e.id) for e in jobs]
    assert revisions == sorted(set(revisions))  # no event twice, none out of order


def test_a_failed_job_s_stream_ends_with_the_failure_and_the_failed_cell(alice: Session):
    item = alice.add_notebook("raises.ipynb")
    job_id = _submit(alice, item)
    stream = Stream(alice, f"/admin/notebooks/jobs/{job_id}/events").start()
    assert stream.done.wait(60)
    last = stream.named("job")[-1].data
    assert last["status"] == "FAILED" and last["failure"]["reason"] == "cell_error"
    failed = [c for c in last["cells"] if c["state"] == "failed"]
    assert [c["cellIndex"] for c in failed] == [last["failure"]["cellIndex"]]


def test_resume_with_last_event_id_sends_only_what_is_newer(alice: Session):
    item = alice.add_notebook("trivial.ipynb")
    job_id = _submit(alice, item)
    ended = alice.wait(job_id, {"COMPLETED"})
    revision = str(ended["revision"])
    current = Stream(alice, f"/admin/notebooks/jobs/{job_id}/events", {"Last-Event-ID": revision}).start()
    older = Stream(alice, f"/admin/notebooks/jobs/{job_id}/events?lastEventId=1").start()
    assert current.done.wait(30) and older.done.wait(30)
    assert [e.name for e in current.events] == ["end"]  # up to date: only the end
    assert [e.name for e in older.events] == ["job", "end"] and older.events[0].id == revision


def test_another_users_job_stream_answers_exactly_like_an_unknown_job(alice: Session, bob: Session):
    item = alice.add_notebook("trivial.ipynb")
    job_id = _submit(alice, item)
    unknown = "j" + "0" * 32
    for path in ("/admin/notebooks/jobs/{}/events", "/admin/system/jobs/{}/events",
                 "/admin/notebooks/jobs/{}/live?f=json"):  # fmt: skip
        theirs = Stream(bob, path.format(job_id)).start()
        none = Stream(bob, path.format(unknown)).start()
        assert theirs.done.wait(30) and none.done.wait(30)
        assert not theirs.content_type.startswith("text/event-stream")
        assert theirs.status == none.status == 200
        assert json.loads(theirs.body.replace(job_id, "ID")) == json.loads(none.body.replace(unknown, "ID"))
        assert json.loads(none.body)["code"] == 404
    not_an_id = Stream(bob, "/admin/notebooks/jobs/nonsense/events").start()
    assert not_an_id.done.wait(30) and json.loads(not_an_id.body)["code"] == 404


def test_without_a_token_the_stream_is_refused_in_the_api_s_error_shape(server: Server):
    with server.client() as http:
        answer = http.get(server.url + "/admin/notebooks/jobs/events")
    assert answer.status_code == 200 and answer.json()["code"] == 499


def test_the_job_list_stream_shows_the_caller_s_jobs_only_and_resumes(alice: Session, bob: Session,
                                                                      admin: Session):  # fmt: skip
    mine = Stream(alice, "/admin/notebooks/jobs/events").start()
    everyone = Stream(admin, "/admin/system/jobs/events").start()
    ready = mine.wait_for(lambda e: e.name == "ready")
    everyone.wait_for(lambda e: e.name == "ready")
    cursor = ready.id
    assert cursor == str(ready.data["cursor"])
    alices = _submit(alice, alice.add_notebook("prints_slowly.ipynb"), steps=3, pause=0.3)
    bobs = _submit(bob, bob.add_notebook("trivial.ipynb"))
    for stream, job_id in ((mine, alices), (everyone, alices), (everyone, bobs)):
        stream.wait_for(lambda e, j=job_id: e.name == "job" and e.data["jobId"] == j
                        and e.data["status"] == "COMPLETED")  # fmt: skip
    statuses = [e.data["status"] for e in mine.named("job") if e.data["jobId"] == alices]
    # the feed tells each job's newest state at each poll (~0.1 s): a 1 s job is seen running, then ended
    assert "EXECUTING" in statuses and statuses[-1] == "COMPLETED"
    assert bobs not in {e.data["jobId"] for e in mine.named("job")}
    row = mine.named("job")[-1].data
    assert set(row) == {
        "jobId",
        "type",
        "status",
        "username",
        "runtimeName",
        "created",
        "revision",
        "progress",
    }
    # resumed from the cursor taken before the two submits: Alice's changes since, not Bob's
    resumed = Stream(alice, "/admin/notebooks/jobs/events", {"Last-Event-ID": cursor}).start()
    resumed.wait_for(lambda e: e.name == "ready")
    missed = [e.data for e in resumed.named("job")]
    assert [m["status"] for m in missed if m["jobId"] == alices][-1] == "COMPLETED"
    assert {m["username"] for m in missed} == {"alice"}  # Bob's change is not hers to see
    for stream in (mine, everyone, resumed):
        stream.close()


def test_an_idle_stream_gets_heartbeats(alice: Session):
    item = alice.add_notebook("sleeps.ipynb")
    job_id = _submit(alice, item, seconds=30)
    stream = Stream(alice, f"/admin/notebooks/jobs/{job_id}/events").start()
    try:
        deadline = time.monotonic() + 20
        while "keep-alive" not in stream.comments and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "keep-alive" in stream.comments  # the e2e server beats every second
    finally:
        alice.post(f"/admin/notebooks/jobs/{job_id}/cancel")
    stream.wait_for(lambda e: e.name == "end")
    assert stream.named("job")[-1].data["status"] == "CANCELLED"


def _open_streams(server: Server, session: Session) -> float:
    metrics = session.http.get(server.url + "/admin/metrics",
                               headers={"Authorization": f"Bearer {session.token}"}).text  # fmt: skip
    match = re.search(r"^nbjobs_event_streams (\S+)$", metrics, re.M)
    assert match, metrics[:2000]
    return float(match.group(1))


def _server_pid(server: Server) -> int:
    def ours(cmdline: list[str]) -> bool:
        return "serve" in cmdline and str(server.data_dir) in cmdline

    (proc,) = [p for p in psutil.process_iter(["cmdline"]) if ours(p.info["cmdline"] or [])]
    return proc.pid


def test_streams_a_client_drops_free_everything(server: Server, alice: Session, admin: Session):
    item = alice.add_notebook("sleeps.ipynb")
    job_id = _submit(alice, item, seconds=60)
    proc = psutil.Process(_server_pid(server))
    try:
        path = f"{server.url}/admin/notebooks/jobs/{job_id}/events"
        headers = {"Authorization": f"Bearer {alice.token}"}

        def open_and_drop(count: int) -> None:
            with server.client() as http:
                for _ in range(count):
                    with http.stream("GET", path, headers=headers) as answer:
                        next(answer.iter_lines())  # the stream is open: "retry: …"
                    # leaving the block closes the connection mid-stream

        open_and_drop(100)  # warm up: the thread pool, TLS sessions, the allocator's arenas
        baseline = _open_streams(server, admin)  # none, unless an earlier test left one open
        before = proc.memory_info().rss
        threads = [threading.Thread(target=open_and_drop, args=(250,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        deadline = time.monotonic() + 30
        while _open_streams(server, admin) > baseline and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _open_streams(server, admin) == baseline  # every dropped stream left the feed
        growth = proc.memory_info().rss - before
        print(
            f"RSS {before / 2**20:.1f} -> {(before + growth) / 2**20:.1f} MiB over 1,000 dropped streams"
        )  # -s shows it
        assert growth < 20 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB over 1,000 dropped streams"
    finally:
        alice.post(f"/admin/notebooks/jobs/{job_id}/cancel")
