"""The SSE reader, the output tail, and the job follower against a real (scripted) HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbjobs.cli.client.api import Api
from nbjobs.cli.client.errors import ClientError, ServerError
from nbjobs.cli.client.live import JobFollower, OutputTail
from nbjobs.cli.client.logs import write_chunks, write_snapshot
from nbjobs.cli.client.sse import Event, EventReader, iter_events

# -- the reader --------------------------------------------------------------------------------------------


def test_events_fields_and_comments():
    lines = ["retry: 2000", ": keep-alive", "event: job", "id: 17", "data: {\"a\":", "data:  1}", "",
             ": keep-alive", "", "event: end", "data: {}", ""]  # fmt: skip
    reader = EventReader()
    events = list(reader.events(lines))
    assert events == [Event("job", '{"a":\n 1}', "17"), Event("end", "{}", "17")]
    assert reader.retry_ms == 2000
    assert reader.last_id == "17"


def test_message_is_the_default_type_and_data_without_a_colon_is_empty():
    assert list(iter_events(["data", "", "data:x", ""])) == [Event("message", ""), Event("message", "x")]


def test_only_one_space_is_dropped_and_a_bom_is_ignored():
    assert list(iter_events(["\ufeffdata:  two spaces", ""])) == [Event("message", " two spaces")]


def test_an_event_without_data_is_not_dispatched_but_its_id_counts():
    reader = EventReader("5")
    assert list(reader.events(["id: 6", "event: job", "", "data: x", ""])) == [Event("message", "x", "6")]


def test_a_bad_id_or_retry_is_ignored():
    reader = EventReader("1")
    list(reader.events(["id: a\0b", "retry: 12x", "retry: ²", "data: x", ""]))
    assert reader.last_id == "1"
    assert reader.retry_ms is None


def test_an_unfinished_last_event_is_dropped():
    assert list(iter_events(["data: complete", "", "event: job", "data: half"])) == [
        Event("message", "complete")
    ]


def test_crlf_line_ends_are_stripped():
    assert list(iter_events(["data: x\r\n", "\r\n"])) == [Event("message", "x")]


# -- the output tail -----------------------------------------------------------------------------------------


def _out(cell: int, name: str, text: str, end: int) -> dict:
    return {"cellIndex": cell, "name": name, "text": text, "end": end}


def test_output_tail_prints_only_what_is_new():
    tail = OutputTail()
    first = list(tail.new([_out(1, "stdout", "a\nb\n", 4)]))
    assert [(c.text, c.dropped) for c in first] == [("a\nb\n", 0)]
    again = list(tail.new([_out(1, "stdout", "a\nb\n", 4), _out(2, "stderr", "w\n", 2)]))
    assert [(c.cell_index, c.name, c.text) for c in again] == [(2, "stderr", "w\n")]
    more = list(tail.new([_out(1, "stdout", "b\nc\n", 6)]))  # the tail slid: only "c\n" is new
    assert [(c.text, c.dropped) for c in more] == [("c\n", 0)]


def test_output_tail_marks_what_the_server_dropped(capsys: pytest.CaptureFixture[str]):
    tail = OutputTail()
    write_chunks(tail, [_out(1, "stdout", "x\n", 2)])
    write_chunks(tail, [_out(1, "stdout", "z\n", 1002)])  # 1000 characters written, 2 kept
    write_chunks(tail, [_out(3, "stderr", "late\n", 5005)])  # first seen already cut
    write_chunks(tail, [_out(4, "stdout", "ial line\nnext\n", 9014)])  # kept from mid-line: whole lines
    captured = capsys.readouterr()
    assert (
        captured.out == "x\n[... 998 characters not kept ...]\nz\n[... 9009 characters not kept ...]\nnext\n"
    )
    assert captured.err == "[... 5000 characters not kept ...]\nlate\n"


def test_a_retried_attempt_prints_its_output_again_after_a_line(capsys: pytest.CaptureFixture[str]):
    tail = OutputTail()
    write_snapshot(tail, {"attempt": 1, "output": [_out(1, "stdout", "try\n", 4)]})
    write_snapshot(tail, {"attempt": 1, "output": [_out(1, "stdout", "try\n", 4)]})
    write_snapshot(tail, {"attempt": 2, "output": [_out(1, "stdout", "try\n", 4)]})
    captured = capsys.readouterr()
    assert captured.out == "try\ntry\n"
    assert captured.err == "[attempt 2]\n"


# -- the follower against a real HTTP server ---------------------------------------------------------------

Answer = Callable[[BaseHTTPRequestHandler], None]


def sse(*chunks: str, close_mid_event: str = "") -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write("".join(chunks).encode() + close_mid_event.encode())
        handler.wfile.flush()

    return answer


def as_json(body: object) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        data = json.dumps(body).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


def job_event(revision: int, status: str, output: list[dict], failure: dict | None = None) -> str:
    snapshot = {"jobId": "j1", "status": status, "revision": revision, "output": output, "failure": failure,
                "progress": {"percent": 50, "message": "Executing cell 1 of 2"}}  # fmt: skip
    return f"event: job\nid: {revision}\ndata: {json.dumps(snapshot)}\n\n"


NO_ROUTE = {"status": "error", "code": 404, "messages": ["Resource not found."]}


class Scripted:
    """Answers each path with the next of its scripted answers (the last one repeats)."""

    def __init__(self, script: dict[str, list[Answer]]) -> None:
        self.script = script
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = self.path.split("?")[0].removeprefix("/ctx")
                outer.requests.append((path, dict(self.headers)))
                answers = outer.script.get(path) or [as_json(NO_ROUTE)]
                (answers.pop(0) if len(answers) > 1 else answers[0])(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/ctx"


@pytest.fixture
def slept() -> Iterator[list[float]]:
    yield []


EVENTS = "/admin/notebooks/jobs/j1/events"


def test_follower_resumes_with_last_event_id_and_prints_each_line_once(
    slept: list[float], capsys: pytest.CaptureFixture[str]
):
    first = sse("retry: 1500\n\n", job_event(1, "EXECUTING", [_out(1, "stdout", "one\n", 4)]),
                close_mid_event="event: job\nid: 2\ndata: {\"half")  # fmt: skip
    second = sse(job_event(3, "EXECUTING", [_out(1, "stdout", "one\ntwo\n", 8)]),
                 job_event(4, "COMPLETED", [_out(1, "stdout", "one\ntwo\nthree\n", 14)]),
                 'event: end\ndata: {"status": "COMPLETED"}\n\n')  # fmt: skip
    with Scripted({EVENTS: [first, second]}) as server, Api(server.base, "tok") as api:
        follower = JobFollower(api, "j1", sleep=slept.append)
        tail = OutputTail()
        statuses = []
        for snapshot in follower.snapshots():
            statuses.append(snapshot["status"])
            write_chunks(tail, snapshot["output"])
        headers = [h for p, h in server.requests if p == EVENTS]
    assert statuses == ["EXECUTING", "EXECUTING", "COMPLETED"]
    assert capsys.readouterr().out == "one\ntwo\nthree\n"
    assert follower.reconnects == 1 and slept == [1.5]  # the server's retry: value
    assert "Last-Event-ID" not in headers[0]
    assert headers[1]["Last-Event-ID"] == "1"  # the half event's id was never dispatched
    assert headers[0]["Authorization"] == "Bearer tok"
    assert follower.exit_status == 0


def test_follower_exit_status_of_a_failed_job(slept: list[float]):
    failure = {"reason": "kernel_died", "message": "The kernel died."}
    stream = sse(job_event(1, "FAILED", [], failure), 'event: end\ndata: {"status": "FAILED"}\n\n')
    with Scripted({EVENTS: [stream]}) as server, Api(server.base, "tok") as api:
        follower = JobFollower(api, "j1", sleep=slept.append)
        assert [s["status"] for s in follower.snapshots()] == ["FAILED"]
    assert follower.failure == failure
    assert follower.exit_status == 138


def test_an_error_event_ends_the_follow_with_its_code(slept: list[float]):
    stream = sse(
        job_event(1, "EXECUTING", []), 'event: error\ndata: {"code": 498, "message": "Token Expired."}\n\n'
    )
    with (
        Scripted({EVENTS: [stream]}) as server,
        Api(server.base, "tok") as api,
        pytest.raises(ServerError) as caught,
    ):
        list(JobFollower(api, "j1", sleep=slept.append).snapshots())
    assert caught.value.message == "error 498: Token Expired."


def test_an_unknown_job_on_the_stream_is_its_error_not_a_fallback(slept: list[float]):
    unknown = as_json(
        {"status": "error", "code": 404, "messages": ["Job 'j1' does not exist or is inaccessible."]}
    )
    with (
        Scripted({EVENTS: [unknown]}) as server,
        Api(server.base, "tok") as api,
        pytest.raises(ServerError, match="error 404: Job 'j1' does not exist"),
    ):
        list(JobFollower(api, "j1", sleep=slept.append).snapshots())


def test_a_server_without_the_stream_is_polled(slept: list[float]):
    def job(status: str) -> Answer:
        progress = {"executeNotebookProgress": {"percent": 40, "message": "m"}}
        return as_json({"jobId": "j1", "status": status, "revision": len(status), "failure": None,
                        "customAttributes": progress})  # fmt: skip

    script = {"/admin/notebooks/jobs/j1": [job("EXECUTING"), job("EXECUTING"), job("COMPLETED")]}
    with Scripted(script) as server, Api(server.base, "tok") as api:
        follower = JobFollower(api, "j1", poll_seconds=0.01, sleep=slept.append)
        statuses = [s["status"] for s in follower.snapshots()]
    assert follower.polling
    assert statuses == ["EXECUTING", "COMPLETED"]  # an unchanged answer is not repeated
    assert slept == [0.01, 0.01]


def test_a_malformed_event_is_one_line(slept: list[float]):
    stream = sse("event: job\nid: 1\ndata: <html>\n\n")
    with (
        Scripted({EVENTS: [stream]}) as server,
        Api(server.base, "tok") as api,
        pytest.raises(ClientError, match="not a JSON object: '<html>'"),
    ):
        list(JobFollower(api, "j1", sleep=slept.append).snapshots())
