"""A runner's fork request to a kernel template: asked once when it was taken, again only when it
cannot have been (``request_fork`` against a stand-in template on a real Unix socket).

Found under load (issue #17 point 9): the runner sent an empty tail after the whole request line; the
template had already forked, replied and hung up, so that send failed with EPIPE, the request was
taken for unsent and asked again, and a second kernel was forked on the same connection file. The
job's client then talked to one kernel while the job recorded the other (a cancel interrupted nothing),
or its IOPub reached the other (a job COMPLETED with no outputs). The two tests below make the
template's hang-up come exactly where the machine under load put it.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nbjobs.execution.fork import client
from nbjobs.execution.fork.child import ForkSpec
from tests.fork_requests import read_request


class StandIn:
    """A template on a Unix socket: answers each whole request line with a pid, then hangs up; the
    first ``refuse`` connections it closes before reading anything."""

    def __init__(self, path: Path, refuse: int = 0) -> None:
        self.path = str(path)
        self.refuse = refuse
        self.taken: list[dict] = []  # the whole requests it read
        self.hung_up = threading.Event()  # set each time it closes a connection
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                peer, _ = self._server.accept()
            except OSError:
                return
            with peer:
                if self.refuse > 0:
                    self.refuse -= 1
                else:
                    data = read_request(peer)
                    if b"\n" in data:
                        self.taken.append(json.loads(data.split(b"\n", 1)[0]))
                        peer.sendall(json.dumps({"pid": 4000 + len(self.taken)}).encode() + b"\n")
            self.hung_up.set()

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[Callable[..., StandIn]]:
    made: list[StandIn] = []

    def make(refuse: int = 0) -> StandIn:
        made.append(StandIn(tmp_path / f"fork-{len(made)}.sock", refuse))
        return made[-1]

    yield make
    for it in made:
        it.close()


def _spec(tmp_path: Path) -> ForkSpec:
    return ForkSpec(connection_file=str(tmp_path / "kernel.json"), cwd=str(tmp_path), env={"A": "1"},
                    log_path="", parent_pid=1)  # fmt: skip


def _after_send(monkeypatch: pytest.MonkeyPatch, before: Callable[[], None] = lambda: None,
                after: Callable[[], None] = lambda: None) -> None:  # fmt: skip
    """Run ``before`` and ``after`` around the runner's first send of each request (a descheduled runner)."""
    real = socket.send_fds

    def send_fds(sock, buffers, fds, *args):  # type: ignore[no-untyped-def]
        before()
        sent = real(sock, buffers, fds, *args)
        after()
        return sent

    monkeypatch.setattr(client.socket, "send_fds", send_fds)


def test_a_request_the_template_took_is_not_sent_again(stand_in, tmp_path, monkeypatch):
    template = stand_in()
    # the whole line is out; the template forks, replies and hangs up before the runner runs again
    _after_send(monkeypatch, after=lambda: template.hung_up.wait(10))
    pid = client.request_fork(template.path, _spec(tmp_path), argv=["python", "-m", "ipykernel_launcher"])
    assert pid == 4001  # the reply that was waiting in the socket, read after the hang-up
    assert len(template.taken) == 1  # one request, so one kernel: the bug asked twice (pid 4002)
    assert template.taken[0]["connection_file"] == str(tmp_path / "kernel.json")


def test_a_request_the_template_closed_on_before_reading_is_sent_again(stand_in, tmp_path, monkeypatch):
    template = stand_in(refuse=1)
    sends = []

    def first_after_hang_up() -> None:  # the first send meets a connection the template has closed
        sends.append(1)
        if len(sends) == 1:
            template.hung_up.wait(10)

    _after_send(monkeypatch, before=first_after_hang_up)
    assert client.request_fork(template.path, _spec(tmp_path)) == 4001
    assert len(sends) == 2 and len(template.taken) == 1


def test_a_request_larger_than_one_send_arrives_whole(stand_in, tmp_path):
    template = stand_in()
    spec = _spec(tmp_path)
    spec.env["BIG"] = "x" * 300_000  # several sends: the fd goes with the first bytes only
    assert client.request_fork(template.path, spec) == 4001
    assert template.taken[0]["env"]["BIG"] == "x" * 300_000
