"""The interactive notebooks' reverse proxy (nbjobs.web.proxy) between real servers: a Jupyter-like
upstream and an app mounting the proxy, both under uvicorn; httpx and websockets as the browser."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
import uvicorn
import websockets
from starlette.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from nbjobs.web.proxy import Upstream, same_origin, scrub_query, target
from tests.web.proxy_support import (
    ENDLESS_CLOSED,
    KERNEL_PROTOCOL,
    RECORDER,
    SMALL_MESSAGE,
    TOKEN,
    Served,
    blocks,
    free_port,
    proxy_app,
    upstream_app,
)

MiB = 2**20


@pytest.fixture(scope="module")
def upstream() -> Iterator[Served]:
    with Served(upstream_app, ws_max_size=64 * MiB) as served:
        yield served


@pytest.fixture(scope="module")
def front(upstream: Served) -> Iterator[Served]:
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Served(proxy_app(upstream.base, gone)) as served:  # uvicorn's defaults: ws="auto"
        yield served


@pytest.fixture
def browser(front: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=front.base, timeout=10, trust_env=False) as client:
        yield client


def ws_url(front: Served, path: str) -> str:
    return f"ws://127.0.0.1:{front.port}/nbjobs/notebooks/{path}"


def seen_headers(answer: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in answer["headers"]:
        out.setdefault(name, []).append(value)
    return out


# ---- HTTP --------------------------------------------------------------------------------------------


def test_status_headers_body_and_query_pass_through(browser: httpx.Client, upstream: Served) -> None:
    answer = browser.post(
        "/nbjobs/notebooks/c1/echo?a=1&b=%20x+y&status=201",
        content=b"hello upstream",
        headers={"X-Custom": "kept", "Accept-Language": "de"},
    )
    assert answer.status_code == 201
    seen = answer.json()
    assert seen["method"] == "POST" and seen["body"] == "hello upstream"
    assert seen["path"] == "/nbjobs/notebooks/c1/echo"
    assert seen["query"] == "a=1&b=%20x+y&status=201"  # byte for byte
    headers = seen_headers(seen)
    assert headers["host"] == [f"127.0.0.1:{upstream.port}"]
    assert headers["x-custom"] == ["kept"] and headers["accept-language"] == ["de"]
    assert answer.headers["x-upstream"] == "yes"
    assert answer.headers.get_list("set-cookie") == ["_xsrf=abc; Path=/", "other=1; Path=/"]
    assert answer.headers["content-type"] == "application/json"


def test_hop_by_hop_headers_are_dropped_both_ways(browser: httpx.Client) -> None:
    answer = browser.get(
        "/nbjobs/notebooks/c1/echo",
        headers={
            "Connection": "keep-alive, X-Hop-Request",
            "X-Hop-Request": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Trailer": "X-Checksum",
            "Proxy-Authorization": "Basic c2VjcmV0",
            "Proxy-Connection": "keep-alive",
        },
    )
    headers = seen_headers(answer.json())
    for name in ("x-hop-request", "keep-alive", "te", "trailer", "proxy-authorization", "proxy-connection"):
        assert name not in headers, name
    assert "transfer-encoding" not in headers and "upgrade" not in headers
    # and the upstream's: Keep-Alive, Proxy-Authenticate, X-Hop (named in its Connection header)
    for name in ("keep-alive", "proxy-authenticate", "x-hop"):
        assert name not in answer.headers, name
    assert answer.headers.get("connection", "keep-alive") == "keep-alive"


def test_secrets_never_reach_the_upstream(browser: httpx.Client, upstream: Served) -> None:
    answer = browser.get(
        "/nbjobs/notebooks/c1/echo?token=SECRET-Q&x=1&Token=SECRET-Q2",
        headers={
            "Cookie": "nbjobs_app=SECRET-C1; _xsrf=2|abc; nbjobs_token=SECRET-C2; theme=dark",
            "Authorization": "Bearer SECRET-A",
            "X-Esri-Authorization": "Bearer SECRET-E",
            "Referer": "http://127.0.0.1/nbjobs/notebooks/c1/lab?token=SECRET-R",
            "Origin": "http://127.0.0.1:1234",
        },
    )
    assert answer.status_code == 200  # the upstream's token check passed
    seen = answer.json()
    assert "SECRET" not in json.dumps(seen)
    headers = seen_headers(seen)
    assert headers["cookie"] == ["_xsrf=2|abc; theme=dark"]
    assert headers["authorization"] == [f"token {TOKEN}"]
    assert "x-esri-authorization" not in headers and "referer" not in headers
    assert headers["origin"] == [upstream.base]  # the upstream's own: what a Jupyter server checks
    assert seen["query"] == "x=1"


def test_the_proxy_keeps_no_cookies_between_browsers(front: Served) -> None:
    with (
        httpx.Client(base_url=front.base, trust_env=False) as alice,
        httpx.Client(base_url=front.base, trust_env=False) as bob,
    ):
        assert alice.get("/nbjobs/notebooks/c1/echo").cookies["_xsrf"] == "abc"  # alice's browser has it
        seen = bob.get("/nbjobs/notebooks/c1/echo", headers={"Cookie": "nbjobs_app=S; nbjobs_token=T"})
    assert "cookie" not in seen_headers(seen.json())  # neither alice's cookie nor bob's session cookies


def test_request_bodies_stream_with_length_or_chunked(browser: httpx.Client) -> None:
    data = b"".join(blocks(300_000))
    sized = browser.put("/nbjobs/notebooks/c1/upload", content=data).json()
    assert sized["bytes"] == len(data) and sized["sha256"] == hashlib.sha256(data).hexdigest()
    assert sized["length"] == str(len(data)) and sized["chunked"] is None
    chunked = browser.post("/nbjobs/notebooks/c1/upload", content=iter([data[:1000], data[1000:]])).json()
    assert chunked["bytes"] == len(data) and chunked["chunked"] == "chunked"
    empty = browser.get("/nbjobs/notebooks/c1/echo")
    assert empty.json()["body"] == ""
    assert "transfer-encoding" not in seen_headers(empty.json())  # no body invented for a GET


def test_redirects_are_passed_not_followed(browser: httpx.Client, upstream: Served) -> None:
    answer = browser.get("/nbjobs/notebooks/c1/redirect")
    assert answer.status_code == 302
    assert answer.headers["location"] == "/nbjobs/notebooks/c1/lab"
    absolute = browser.get("/nbjobs/notebooks/c1/redirect?absolute=1")
    assert absolute.status_code == 302  # an absolute one to the upstream's address becomes a path
    assert absolute.headers["location"] == "/nbjobs/notebooks/c1/lab?x=1"


def test_an_unreachable_upstream_is_a_502_without_details(browser: httpx.Client, front: Served) -> None:
    answer = browser.get("/nbjobs/notebooks/gone/echo")
    assert answer.status_code == 502
    assert answer.text == "The notebook server is not reachable."
    for leak in ("127.0.0.1", "Errno", "refused", "Traceback", "httpx"):
        assert leak not in answer.text and leak not in str(answer.headers)


def test_a_response_breaking_mid_stream_drops_the_browser_connection(browser: httpx.Client) -> None:
    started = time.monotonic()
    received = 0
    with (
        pytest.raises(httpx.RemoteProtocolError),
        browser.stream("GET", "/nbjobs/notebooks/c1/broken") as answer,
    ):
        assert answer.status_code == 200
        for chunk in answer.iter_raw():
            received += len(chunk)
    assert received == 64 * 1024  # what came before the break, and no clean end after it
    assert time.monotonic() - started < 5


def test_a_browser_leaving_a_download_releases_the_upstream(browser: httpx.Client) -> None:
    ENDLESS_CLOSED.clear()
    with browser.stream("GET", "/nbjobs/notebooks/c1/endless") as answer:
        for i, _ in enumerate(answer.iter_raw()):
            if i == 20:
                break
    assert ENDLESS_CLOSED.wait(10), "the upstream kept streaming to nobody"


def test_a_path_outside_the_prefix_is_not_proxied() -> None:
    up = Upstream(base="http://127.0.0.1:9", token="t", path_prefix="/nbjobs/notebooks/c1")

    def scope(raw: bytes, query: bytes = b"") -> dict:
        return {"raw_path": raw, "path": raw.decode(), "query_string": query}

    assert target(up, scope(b"/nbjobs/notebooks/c1/api/x%2Fy", b"a=1"), "http") == httpx.URL(
        "http://127.0.0.1:9/nbjobs/notebooks/c1/api/x%2Fy?a=1"
    )
    assert str(target(up, scope(b"/nbjobs/notebooks/c1/api/kernels"), "ws")).startswith("ws://")
    assert target(up, scope(b"/nbjobs/notebooks/c1/../c2/api"), "http") is None
    assert target(up, scope(b"/nbjobs/notebooks/c1/%2e%2e/c2/api"), "http") is None
    assert target(up, scope(b"/nbjobs/notebooks/c10/api"), "http") is None


def test_scrub_query() -> None:
    assert scrub_query(b"token=a") == b""
    assert scrub_query(b"a=1&token=x&b=%2F&TOKEN=y&to%6Ben=z&token") == b"a=1&b=%2F"
    assert scrub_query(b"tokens=1&mytoken=2") == b"tokens=1&mytoken=2"


def _rss() -> int:
    return psutil.Process().memory_info().rss


@pytest.mark.slow
def test_a_100_mb_upload_streams(browser: httpx.Client) -> None:
    total = 100 * MiB
    digest = hashlib.sha256()
    peak = 0

    def body() -> Iterator[bytes]:
        nonlocal peak
        for i, piece in enumerate(blocks(total)):
            digest.update(piece)
            if i % 64 == 0:
                peak = max(peak, _rss())
            yield piece

    browser.put("/nbjobs/notebooks/c1/upload", content=b"warm-up")
    before = _rss()
    answer = browser.put(
        "/nbjobs/notebooks/c1/upload", content=body(), headers={"Content-Length": str(total)}, timeout=120
    )
    peak = max(peak, _rss())
    assert answer.json() == {
        "bytes": total,
        "sha256": digest.hexdigest(),
        "length": str(total),
        "chunked": None,
    }
    grown = (peak - before) / MiB
    print(f"100 MB upload: RSS {before / MiB:.0f} MiB, peak +{grown:.1f} MiB")
    assert grown < 50


@pytest.mark.slow
def test_a_100_mb_download_streams(browser: httpx.Client) -> None:
    total = 100 * MiB
    expected = hashlib.sha256()
    for piece in blocks(total):
        expected.update(piece)
    browser.get("/nbjobs/notebooks/c1/download?n=1000").read()
    before = peak = _rss()
    digest, count = hashlib.sha256(), 0
    with browser.stream("GET", f"/nbjobs/notebooks/c1/download?n={total}", timeout=120) as answer:
        for i, chunk in enumerate(answer.iter_raw()):
            digest.update(chunk)
            count += len(chunk)
            if i % 64 == 0:
                peak = max(peak, _rss())
    peak = max(peak, _rss())
    assert count == total and digest.hexdigest() == expected.hexdigest()
    grown = (peak - before) / MiB
    print(f"100 MB download: RSS {before / MiB:.0f} MiB, peak +{grown:.1f} MiB")
    assert grown < 50


# ---- WebSocket ---------------------------------------------------------------------------------------


def test_uvicorn_serves_websockets_with_the_installed_library() -> None:
    config = uvicorn.Config("tests.web.proxy_support:upstream_app")  # the defaults `nbjobs serve` uses
    config.load()
    assert config.ws_protocol_class is not None


def test_frames_relay_both_ways_with_the_upstreams_subprotocol(front: Served) -> None:
    with connect(ws_url(front, "c1/ws/echo"), subprotocols=[KERNEL_PROTOCOL, "other"]) as ws:
        assert ws.subprotocol == KERNEL_PROTOCOL
        ws.send("text frame ✓")
        assert ws.recv() == "text frame ✓"
        ws.send(b"\x00\x01binary")
        assert ws.recv() == b"\x00\x01binary"
    with connect(ws_url(front, "c1/ws/echo"), subprotocols=["other"]) as ws:
        assert ws.subprotocol is None  # the upstream chose none: the browser is accepted with none
        ws.send("x")
        assert ws.recv() == "x"


def test_both_directions_relay_independently(front: Served) -> None:
    with connect(ws_url(front, "c1/ws/echo?ticks=5")) as ws:
        assert [ws.recv(timeout=5) for _ in range(5)] == [f"tick {i}" for i in range(5)]  # nothing sent
        for i in range(50):  # sent without reading the echoes in between
            ws.send(f"m{i}")
        assert [ws.recv(timeout=5) for _ in range(50)] == [f"m{i}" for i in range(50)]


def test_the_upstream_handshake_is_scrubbed_and_passes_an_origin_check(
    front: Served, upstream: Served
) -> None:
    url = ws_url(front, "c1/ws/headers?token=SECRET-Q&session_id=s1")
    headers = {
        "Cookie": "nbjobs_app=SECRET-C1; _xsrf=x; nbjobs_token=SECRET-C2",
        "Authorization": "Bearer SECRET-A",
        "X-Esri-Authorization": "Bearer SECRET-E",
    }
    # The browser's Origin is nbjobs' (another port than the upstream's): passed on unchanged, the
    # upstream's Jupyter-like check would refuse it.
    with connect(url, origin=f"http://127.0.0.1:{front.port}", additional_headers=headers) as ws:
        seen = json.loads(ws.recv())
    assert "SECRET" not in json.dumps(seen)
    h = seen_headers(seen)
    assert h["cookie"] == ["_xsrf=x"] and h["authorization"] == [f"token {TOKEN}"]
    assert h["origin"] == [upstream.base] and h["host"] == [f"127.0.0.1:{upstream.port}"]
    assert "x-esri-authorization" not in h
    assert seen["query"] == "session_id=s1"
    assert seen["path"] == "/nbjobs/notebooks/c1/ws/headers"


@pytest.mark.parametrize("path", ["c1/ws/refuse", "gone/ws/echo"])
def test_a_refused_upstream_handshake_is_a_bare_502(front: Served, path: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(front, path))
    response = refused.value.response
    assert response.status_code == 502
    assert b"SECRET" not in response.body and b"127.0.0.1" not in response.body


def test_close_codes_and_reasons_pass_both_ways(front: Served) -> None:
    with connect(ws_url(front, "c1/ws/echo?key=bye")) as ws:
        ws.send("hi")
        assert ws.recv() == "hi"
        ws.close(4000, "bye")
    assert RECORDER.wait("bye") == (4000, "bye")
    with (
        connect(ws_url(front, "c1/ws/close?code=4001&reason=later")) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "later")


def _closed_by_proxy(ws) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def test_messages_up_to_the_limit_pass(front: Served) -> None:
    with connect(ws_url(front, "c1/ws/echo"), max_size=None) as ws:
        ws.send(b"a" * (16 * MiB))  # the default max_message, exactly
        assert len(ws.recv()) == 16 * MiB
        ws.send("b" * SMALL_MESSAGE)
        assert len(ws.recv()) == SMALL_MESSAGE
    with connect(ws_url(front, f"small/ws/big?n={SMALL_MESSAGE}"), max_size=None) as ws:
        assert len(ws.recv()) == SMALL_MESSAGE


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (f"small/ws/big?n={SMALL_MESSAGE + 1}&key=up-small", "up-small"),  # upstream -> browser, ours
        (f"c1/ws/big?n={16 * MiB + 1}&key=up-default", "up-default"),
    ],
)
def test_an_oversized_upstream_message_closes_both_with_1009(front: Served, path: str, key: str) -> None:
    with connect(ws_url(front, path), max_size=None) as ws:
        assert _closed_by_proxy(ws) == 1009
    assert RECORDER.wait(key)[0] == 1009


@pytest.mark.parametrize(
    ("cid", "size"),
    [("small", SMALL_MESSAGE + 1), ("c1", 16 * MiB + 1)],  # our limit; uvicorn's ws_max_size (16 MiB)
)
def test_an_oversized_browser_message_closes_both_with_1009(front: Served, cid: str, size: int) -> None:
    key = f"down-{cid}"
    with connect(ws_url(front, f"{cid}/ws/echo?quiet&key={key}"), max_size=None) as ws:
        ws.send(b"z" * size)
        assert _closed_by_proxy(ws) == 1009
    assert RECORDER.wait(key)[0] == 1009


def test_either_side_ending_ends_both_relay_tasks(front: Served) -> None:
    baseline = settled_task_count(front)  # earlier tests' connections may still be closing
    # the browser closes; the upstream closes; the browser's TCP connection drops without a close
    with connect(ws_url(front, "c1/ws/echo?key=t1")) as ws:
        ws.send("1")
        ws.recv()
        assert front.task_count() > baseline  # the relay is running
    with connect(ws_url(front, "c1/ws/close?code=1000")) as ws, pytest.raises(ConnectionClosed):
        ws.recv()

    async def drop() -> None:
        conn = await websockets.connect(ws_url(front, "c1/ws/echo?key=t3"))
        await conn.send("3")
        await conn.recv()
        conn.transport.abort()
        await conn.wait_closed()

    asyncio.run(drop())
    assert RECORDER.wait("t1")[0] == 1000
    # uvicorn reports a lost connection like a close frame without a code (1005): the upstream gets 1000
    assert RECORDER.wait("t3")[0] == 1000
    deadline = time.monotonic() + 10
    while front.task_count() > baseline:
        assert time.monotonic() < deadline, f"{front.task_count()} tasks, {baseline} before"
        time.sleep(0.05)


def settled_task_count(served: Served) -> int:
    counts = [served.task_count()]
    deadline = time.monotonic() + 10
    while len(counts) < 5 or len(set(counts[-5:])) > 1:
        assert time.monotonic() < deadline, counts
        time.sleep(0.05)
        counts.append(served.task_count())
    return counts[-1]


# ---- Origin ------------------------------------------------------------------------------------------


def _h(*origins: str) -> Headers:
    return Headers(raw=[(b"origin", o.encode()) for o in origins])


@pytest.mark.parametrize(
    ("origins", "scheme", "host", "same"),
    [
        (["https://nb.example.com"], "https", "nb.example.com", True),
        (["https://nb.example.com:443"], "https", "nb.example.com", True),  # default port either way
        (["https://nb.example.com"], "https", "nb.example.com:443", True),
        (["http://nb.example.com"], "http", "nb.example.com:80", True),
        (["HTTPS://NB.Example.COM"], "https", "nb.example.com", True),  # case
        (["https://nb.example.com"], "wss", "NB.example.com", True),  # a WebSocket's own scheme
        (["http://127.0.0.1:8443"], "ws", "127.0.0.1:8443", True),
        (["http://[::1]:8000"], "http", "[::1]:8000", True),
        (["http://nb.example.com"], "https", "nb.example.com", False),  # scheme
        (["https://nb.example.com:8443"], "https", "nb.example.com", False),  # port
        (["https://evil.example.com"], "https", "nb.example.com", False),
        (["https://nb.example.com.evil.com"], "https", "nb.example.com", False),
        ([], "https", "nb.example.com", False),  # missing
        (["null"], "https", "nb.example.com", False),
        (["https://nb.example.com", "https://nb.example.com"], "https", "nb.example.com", False),
        (["https://nb.example.com/path"], "https", "nb.example.com", False),
        (["https://user@nb.example.com"], "https", "nb.example.com", False),
        (["https://nb.example.com:99999"], "https", "nb.example.com", False),
        (["file://nb.example.com"], "https", "nb.example.com", False),
        ([""], "https", "nb.example.com", False),
    ],
)
def test_same_origin(origins: list[str], scheme: str, host: str, same: bool) -> None:
    assert same_origin(_h(*origins), scheme, host) is same
