"""Shared pieces of the benchmarks: a real `nbjobs serve` over HTTPS, notebooks, statistics."""

from __future__ import annotations

import os
import socket
import ssl
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import nbformat
from nbformat.v4 import new_code_cell, new_notebook

BIN = Path(sys.executable).parent
PASSWORD = "bench-password-123"


def trivial_notebook() -> nbformat.NotebookNode:
    """A tagged parameters cell and one code cell: the perf-baseline 'trivial' notebook."""
    return _notebook([new_code_cell("x = 1", metadata={"tags": ["parameters"]}), new_code_cell("y = x + 1")])


def twenty_cell_notebook() -> nbformat.NotebookNode:
    """Twenty small computations, each printing (the perf-baseline 'medium' notebook)."""
    cells = [new_code_cell("x = 1", metadata={"tags": ["parameters"]})]
    cells += [new_code_cell(f"v{i} = sum(range({i} * 1000)) + x\nprint({i}, v{i})") for i in range(20)]
    return _notebook(cells)


def _notebook(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def summary(times: list[float]) -> tuple[float, float, float]:
    """(p50, p95, max) in milliseconds."""
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000, ordered[-1] * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running `nbjobs serve` and a signed-in client for it."""

    proc: subprocess.Popen
    url: str
    data_dir: Path
    http: httpx.Client
    token: str = ""
    last_job: str = ""  # the id of the job run_job ran last

    @classmethod
    def start(
        cls, data_dir: Path, *, workers: int, pool: int, prefix: list[str] | None = None, **env: str
    ) -> Server:
        """Start `nbjobs serve` on ``data_dir``; ``prefix`` runs it through another program (e.g.
        bench/traced.py) as ``[*prefix, "serve", ...]`` instead of the `nbjobs` script."""
        port = free_port()
        environ = {
            **os.environ,
            "NBJOBS_ADMIN_PASSWORD": PASSWORD,
            "NBJOBS_WARM_POOL_SIZE": str(pool),
            "NBJOBS_POLL_SECONDS": "0.05",
            **env,
        }
        with open(data_dir / "serve.log", "ab") as log:  # the server keeps its own copy of the fd
            proc = subprocess.Popen(
                [
                    *(prefix or [str(BIN / "nbjobs")]),
                    "serve",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(data_dir),
                    "--workers",
                    str(workers),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environ,
            )
        url = f"https://127.0.0.1:{port}/arcgis"
        deadline = time.monotonic() + 300  # a busy machine, or a server under tracemalloc, starts slowly
        cert = data_dir / "nbjobs-cert.pem"
        while True:
            if proc.poll() is not None:
                raise RuntimeError((data_dir / "serve.log").read_text())
            try:
                http = httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=60)
                http.get(url + "/sharing/rest", params={"f": "json"}).raise_for_status()
                break
            except (httpx.HTTPError, OSError, ssl.SSLError):
                if time.monotonic() > deadline:
                    proc.kill()  # not left running behind a bench that gave up on it
                    raise
                time.sleep(0.2)
        subprocess.run(
            [
                str(BIN / "nbjobs"),
                "users",
                "add",
                "bench",
                "--password",
                PASSWORD,
                "--data-dir",
                str(data_dir),
            ],
            check=True,
            capture_output=True,
            env=environ,  # the same database as the server's (NBJOBS_DATABASE_URL)
        )
        server = cls(proc, url, data_dir, http)
        answer = http.post(
            url + "/sharing/rest/generateToken",
            data={
                "username": "bench",
                "password": PASSWORD,
                "client": "referer",
                "referer": "https://localhost",
                "f": "json",
            },
        ).json()
        server.token = answer["token"]
        return server

    def another_client(self) -> Server:
        """The same server and token through a new HTTPS client (one per thread)."""
        cert = self.data_dir / "nbjobs-cert.pem"
        http = httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=120)
        return Server(self.proc, self.url, self.data_dir, http, self.token)

    def post(self, path: str, files: dict | None = None, **data: str) -> dict:
        return self.http.post(
            self.url + path, data={"f": "json", "token": self.token, **data}, files=files
        ).json()

    def get(self, path: str) -> dict:
        return self.http.get(self.url + path, params={"f": "json", "token": self.token}).json()

    def add_notebook(self, nb: nbformat.NotebookNode, title: str) -> str:
        files = {"file": (f"{title}.ipynb", nbformat.writes(nb).encode(), "application/x-ipynb+json")}
        answer = self.post(
            "/sharing/rest/content/users/bench/addItem", files=files, type="Notebook", title=title
        )
        return answer["id"]

    def run_job(self, item_id: str, poll: float = 0.01) -> float:
        """Seconds from the executeNotebook request to seeing COMPLETED."""
        start = time.perf_counter()
        answer = self.post(
            "/admin/notebooks/executeNotebook",
            itemId=item_id,
            notebookParameters='{"x": 2}',
            updatePortalItem="false",
        )
        job_id = self.last_job = answer["jobId"]
        while True:
            status = self.get(f"/admin/notebooks/jobs/{job_id}")["status"]
            if status == "COMPLETED":
                return time.perf_counter() - start
            if status in ("FAILED", "CANCELLED"):
                raise RuntimeError(f"job {job_id} ended {status}")
            time.sleep(poll)

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
