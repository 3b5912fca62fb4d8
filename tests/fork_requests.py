"""Reading a fork request as a kernel template does (for stand-in templates in tests)."""

from __future__ import annotations

import socket


def read_request(peer: socket.socket) -> bytes:
    """What the peer sent up to its first newline (or until it hung up); fds passed with it are closed."""
    data = b""
    while b"\n" not in data:
        chunk, fds, _, _ = socket.recv_fds(peer, 65536, 2)
        for fd in fds:
            socket.close(fd)
        if not chunk:
            break
        data += chunk
    return data
