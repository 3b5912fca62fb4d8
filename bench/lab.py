"""Open → ready for interactive notebooks: nbjobs' openNotebook (cold: no server for the user yet;
warm: the user's server runs, another item opens in it) against starting plain ``jupyter lab``.

    .venv/bin/python bench/lab.py [--runs 5]

"ready" is the same for both: the notebook's JupyterLab answers. For nbjobs the clock starts before
the openNotebook POST and stops when a GET of JupyterLab's page for the notebook, through nbjobs'
proxy over HTTPS, returns 200 (the job is polled every 10 ms until COMPLETED first). For plain
JupyterLab it starts before ``python -m jupyterlab`` (the same .venv-lab interpreter nbjobs uses) and
stops when its ``/lab`` page answers 200. Each cold run closes the notebook (which stops the server)
first, so every cold run starts a fresh Jupyter server, as a plain ``jupyter lab`` does.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import Server, summary, trivial_notebook

ROOT = Path(__file__).resolve().parent.parent
LAB_PYTHON = ROOT / ".venv-lab" / "bin" / "python"


def open_ready(server: Server, item_id: str) -> tuple[float, dict]:
    start = time.perf_counter()
    answer = server.post("/admin/notebooks/openNotebook", itemId=item_id, **{"async": "true"})
    while True:
        job = server.get(f"/admin/notebooks/jobs/{answer['jobId']}")
        if job["status"] == "COMPLETED":
            break
        if job["status"] == "FAILED":
            raise RuntimeError(json.dumps(job["failure"]))
        time.sleep(0.01)
    results = job["results"]
    page = f"{server.url}/notebooks/{results['containerId']}/lab/tree/{item_id}.ipynb"
    answer_page = server.http.get(page, headers={"Authorization": f"Bearer {server.token}"})
    answer_page.raise_for_status()
    return time.perf_counter() - start, results


def nbjobs_times(tmp: Path, runs: int) -> tuple[list[float], list[float]]:
    data_dir = tmp / "server"
    data_dir.mkdir()
    server = Server.start(data_dir, workers=1, pool=1)
    try:
        items = [server.add_notebook(trivial_notebook(), f"nb{i}") for i in range(runs + 1)]
        cold, warm = [], []
        for i in range(runs):
            seconds, results = open_ready(server, items[0])
            cold.append(seconds)
            seconds, second = open_ready(server, items[1 + i])  # the same user's server: running
            assert second["containerId"] == results["containerId"]
            warm.append(seconds)
            for notebook_id in (results["notebookId"], second["notebookId"]):
                server.post(f"/admin/notebooks/{notebook_id}/closeNotebook")  # the last stops the server
            wait_no_containers(server)
        return cold, warm
    finally:
        server.stop()


def wait_no_containers(server: Server) -> None:
    while server.get("/admin/system/containers")["containers"]:
        time.sleep(0.05)


def plain_lab_times(tmp: Path, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        root = tmp / f"plain-{i}"
        root.mkdir()
        env = {"JUPYTER_TOKEN": "bench", "JUPYTER_CONFIG_DIR": str(root / "config"),
               "JUPYTER_DATA_DIR": str(root / "data"), "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
               "PATH": "/usr/bin:/bin"}  # fmt: skip
        log = root / "lab.log"
        start = time.perf_counter()
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(LAB_PYTHON), "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.port=0",
                 f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1"],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        try:
            while True:
                found = re.search(r"http://127\.0\.0\.1:(\d+)/", log.read_text(errors="replace"))
                if found:
                    try:
                        url = f"http://127.0.0.1:{found.group(1)}/lab"
                        if httpx.get(url, headers={"Authorization": "token bench"}).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                if proc.poll() is not None:
                    raise RuntimeError(log.read_text())
                time.sleep(0.01)
            times.append(time.perf_counter() - start)
        finally:
            proc.terminate()
            proc.wait(30)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not LAB_PYTHON.exists():
        sys.exit("no .venv-lab: run `make serve` or `make test` once (it builds JupyterLab's environment)")
    with tempfile.TemporaryDirectory() as tmp:
        plain = plain_lab_times(Path(tmp), args.runs)
        cold, warm = nbjobs_times(Path(tmp), args.runs)
    rows = [("plain `jupyter lab` start to /lab", plain), ("nbjobs openNotebook, cold (new server)", cold),
            ("nbjobs openNotebook, warm (user's server running)", warm)]  # fmt: skip
    base = summary(plain)[0]
    print(f"{'open -> JupyterLab answers (ms)':52} {'p50':>8} {'p95':>8} {'max':>8} {'p50 / plain':>12}")
    for name, times in rows:
        p50, p95, worst = summary(times)
        print(f"{name:52} {p50:8.0f} {p95:8.0f} {worst:8.0f} {p50 / base:12.2f}")


if __name__ == "__main__":
    main()
