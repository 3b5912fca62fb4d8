"""A kernel started the stock way after a fork request failed gets sockets of its own.

A template that took the request may still fork a kernel after the runner gave up on it (it replied
after the runner's timeout, or died between the fork and its reply); that kernel binds the connection
file's paths. The stock kernel must not bind the same ones, or the job's channels split between two
kernels. Here a stand-in template reads the request and hangs up without a reply; a real kernel is
then spawned, and the test proves that the connection file the manager wrote is the one the kernel
serves (its own pid comes back over those sockets).
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import pytest
from jupyter_client import BlockingKernelClient
from jupyter_core.utils import run_sync

from nbjobs.execution.kernels import StartMethod, kernel_pid, new_kernel_manager
from tests.fork_requests import read_request

pytestmark = pytest.mark.kernel


def _hangs_up_after_reading(path: Path) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        with server:
            peer, _ = server.accept()
            with peer:
                read_request(peer)  # and hang up without a reply

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_stock_start_after_a_failed_fork_request_gets_sockets_of_its_own(tmp_path):
    listen = tmp_path / "fork.sock"
    served = _hangs_up_after_reading(listen)
    km, sockets = new_kernel_manager("python3", start=StartMethod(fork_socket=str(listen)))
    forked_paths = f"{sockets}/k"  # what the request named: a kernel the template forked would bind k-N
    try:
        run_sync(km.start_kernel)()
        served.join(10)
        assert "hung up without a reply" in km.fallback
        info = km.get_connection_info()
        assert info["transport"] == "ipc" and info["ip"] == f"{sockets}/s"
        assert json.loads(Path(km.connection_file).read_text())["ip"] == f"{sockets}/s"
        kc = BlockingKernelClient(connection_file=km.connection_file)
        kc.load_connection_file()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            printed: list[str] = []

            def hook(msg: dict) -> None:
                printed.append(msg["content"].get("text", ""))

            kc.execute_interactive("import os; print(os.getpid())", timeout=60, output_hook=hook)
            assert int("".join(printed)) == kernel_pid(km)
        finally:
            kc.stop_channels()
        assert not list(Path(sockets).glob("k-*"))  # nothing bound the forked kernel's paths
        assert forked_paths != info["ip"]
    finally:
        run_sync(km.shutdown_kernel)(now=True)
        shutil.rmtree(sockets, ignore_errors=True)
