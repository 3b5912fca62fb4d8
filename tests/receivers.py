"""Real servers for notification tests: an HTTP receiver on loopback that answers as told, an aiosmtpd
SMTP server that keeps what it receives, and raw SMTP servers that stall or hang up mid-message."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """An HTTP receiver: ``answers`` is consumed one per request (``"200"``, ``"500"``, ``"hang"``,
    ``"redirect"``, ``"huge"``); when empty it answers 200."""

    answers: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    huge_bytes_written: int = 0
    huge_done: bool = False  # the "huge" answer ended: written whole, or the client hung up
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    tls: tuple[str, str] | None = None  # (cert file, key file): serve HTTPS

    @property
    def https_url(self) -> str:
        assert self.server is not None
        return f"https://localhost:{self.server.server_address[1]}/hook"

    def start(self, port: int = 0) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.received.append(Received(self.path, headers, body, time.monotonic()))
                answer = receiver.answers.pop(0) if receiver.answers else "200"
                if answer == "hang":
                    time.sleep(10)  # past any sender's timeout in the tests
                    return
                if answer == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://203.0.113.9/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if answer == "huge":
                    self.send_response(200)
                    self.send_header("Content-Length", str(10 * 1024 * 1024))
                    self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        for _ in range(160):
                            self.wfile.write(chunk)
                            receiver.huge_bytes_written += len(chunk)
                    except OSError:
                        pass
                    receiver.huge_done = True
                    return
                status = int(answer)
                text = b"nope" if status >= 400 else b"ok"
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class _Keep:
    """aiosmtpd handler: keeps each message, or refuses with ``refuse`` (e.g. "550 …")."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse = ""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on loopback, in its own thread."""

    def __init__(self) -> None:
        self.handler = _Keep()
        with socket.socket() as probe:  # aiosmtpd's start-up check needs the real port up front
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def stop(self) -> None:
        self.controller.stop()


class RawSmtp:
    """A TCP server speaking just enough SMTP to misbehave: ``silent`` never greets; ``drop`` hangs up
    in the middle of the message body."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                sock: socket.socket = self.request
                if outer.mode == "silent":
                    time.sleep(5)
                    return
                f = sock.makefile("rb")
                sock.sendall(b"220 raw ESMTP\r\n")
                while True:
                    line = f.readline()
                    if not line:
                        return
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        sock.sendall(b"250 raw\r\n")
                    elif verb == b"DATA":
                        sock.sendall(b"354 go ahead\r\n")
                        f.readline()  # one line of the message, then hang up
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                        return
                    else:
                        sock.sendall(b"250 OK\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    def start(self) -> RawSmtp:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
