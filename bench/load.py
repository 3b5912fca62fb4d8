"""Load: many clients submitting and polling jobs while others list and get, optionally over 100k ended jobs.

    .venv/bin/python bench/load.py [--clients 50] [--jobs 2000] [--listers 4] [--seed-ended 0|100000]
                                   [--workers 2] [--users 10] [--queue-cap N] [--json FILE]
                                   [--celery] [--rss-mark 500] [--trace FRAMES]

A real `nbjobs serve` over HTTPS (warm pool = workers, the trivial notebook). ``--seed-ended N`` first
writes N ended jobs (COMPLETED/FAILED/CANCELLED, several users, ended within the last few hours so the
clean-up keeps them) straight into the store with a bulk insert, before the server starts.

Then ``--clients`` threads (each with its own HTTPS connection, shared out over ``--users`` users) submit
``--jobs`` executeNotebook jobs in all and poll their own jobs until they end, while ``--listers`` threads
list jobs (the first page oldest-first, newest-first with detail, a user's own jobs, a page of 1000) and
get single jobs (seeded and new ones) until the submitters are done.

Every request is timed and classified: ok, a documented limit error (docs/limits.md: 429 "Too many
jobs", 413 "… larger than …"; counted, and a refused submit is sent again after a pause), or anything else
(a failure: must be 0). At the end: accepted, ended (by status), lost (accepted but not ended within the
timeout: must be 0; each one's status read back then, so a slow machine's still-queued jobs are told
from a real loss), duplicates (job ids issued twice, or more new jobs in the store than were accepted:
must be 0), p50/p95/p99/max per kind of request, completed jobs/s, and the server's RSS at the start,
after the first ``--rss-mark`` jobs ended, at the end and its peak; "growth" is end / mark - 1 (issue #17:
within 15 %).

``--celery`` runs the distributed mode instead: a fresh PostgreSQL database (NBJOBS_TEST_POSTGRES_URL's
server), Redis (NBJOBS_TEST_REDIS_URL) as the broker, `nbjobs serve` as the API server only and one
`nbjobs worker --concurrency WORKERS`; the RSS figures are still the `nbjobs serve` process's.

``--trace FRAMES`` runs the server under tracemalloc (bench/traced.py), takes a heap snapshot at the mark
and one at the end, and prints the 25 allocation sites that grew most between them (docs/reliability.md,
"Memory").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nbformat
import psutil

try:
    from common import BIN, PASSWORD, Server, trivial_notebook
except ModuleNotFoundError:  # imported as bench.load (tests/e2e/test_load.py)
    from bench.common import BIN, PASSWORD, Server, trivial_notebook

ENDED = ("COMPLETED", "FAILED", "CANCELLED")
# The documented limit errors a request of this load may meet (docs/limits.md): code -> message marks.
LIMIT_ERRORS = {429: ("Too many jobs",), 413: ("larger than", "bytes as JSON")}
HOUR_MS = 3_600_000
HERE = Path(__file__).resolve().parent
POSTGRES_URL = os.environ.get("NBJOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("NBJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


# -- seeding -------------------------------------------------------------------------------------------


def seed_ended_jobs(
    data_dir: Path,
    count: int,
    usernames: list[str],
    *,
    environ: dict[str, str] | None = None,
    spread_hours: float = 4.0,
    batch: int = 5000,
    rng: random.Random | None = None,
) -> list[str]:
    """Write ``count`` ended jobs of ``usernames`` straight into the store of ``data_dir`` (migrating it
    first), ended over the last ``spread_hours`` hours, each with the small input notebook every job has;
    returns their ids. Also creates the administrator and the users (password PASSWORD) if missing."""
    from sqlalchemy import insert

    from nbjobs.clock import now_ms
    from nbjobs.errors import UserExists
    from nbjobs.models.jobs import Failure, FailureReason, JobInputs
    from nbjobs.models.parameters import parse_parameters
    from nbjobs.models.runtimes import DEFAULT_RUNTIME
    from nbjobs.service.accounts.users import UserService
    from nbjobs.settings import load_settings
    from nbjobs.store.engine import open_store
    from nbjobs.store.tables import job_blobs, jobs
    from nbjobs.store.users import SqlUserStore

    rng = rng or random.Random(0)
    settings = load_settings(environ or {}, data_dir=data_dir)
    store = open_store(settings)
    try:
        users = UserService(SqlUserStore(store.engine), now_ms)
        # as `nbjobs serve` would on an empty store
        users.ensure_admin(settings.accounts.admin_user, PASSWORD)
        for name in usernames:
            with contextlib.suppress(UserExists):
                users.add(name, PASSWORD)
        notebook = nbformat.writes(trivial_notebook()).encode()
        now = now_ms()
        ids: list[str] = []
        for first in range(0, count, batch):
            rows, blobs = [], []
            for _ in range(min(batch, count - first)):
                job_id = "j" + "".join(rng.choices(BASE36, k=32))  # new_job_id()'s shape, 20x faster
                ended = now - 60_000 - int(rng.random() * spread_hours * HOUR_MS)
                started = ended - rng.randint(50, 60_000)
                created = started - rng.randint(5, 5_000)
                status = rng.choices(ENDED, weights=(80, 15, 5))[0]
                failure = None
                if status == "FAILED":
                    failure = Failure(FailureReason.CELL_ERROR, "NameError: name 'z' is not defined")
                elif status == "CANCELLED":
                    failure = Failure(FailureReason.CANCELLED, "The job was cancelled")
                cells = 2 if status == "COMPLETED" else 1
                rows.append(
                    {
                        "job_id": job_id,
                        "type": "executeNotebook",
                        "username": rng.choice(usernames),
                        "status": status,
                        "inputs": JobInputs(
                            item_id=f"{rng.getrandbits(128):032x}",
                            update_portal_item=False,
                            notebook_parameters=parse_parameters({"x": rng.randint(0, 1000)}),
                        ).to_wire(),
                        "results": {
                            "cellsExecuted": cells,
                            "outputTruncated": False,
                            "hasOutputNotebook": True,
                        },
                        "failure": failure.to_wire() if failure else None,
                        "runtime_id": DEFAULT_RUNTIME.runtime_id,
                        "runtime_name": DEFAULT_RUNTIME.name,
                        "runtime_version": DEFAULT_RUNTIME.version,
                        "kernel_name": DEFAULT_RUNTIME.kernel_name,
                        "date_created": created,
                        "revision": ended,
                        "start_time": started,
                        "end_time": ended,
                        "attempt": 1,
                        "retry_on_worker_lost": 0,
                        "progress_message": f"Executed {cells} of 2 cells",
                        "progress_percent": 100 if status == "COMPLETED" else 50,
                        "cancel_requested": status == "CANCELLED",
                        "worker_id": "seed/0",
                        "lease_expires": 0,
                        "runner_pid": 0,
                        "kernel_pid": 0,
                        "dispatched_at": 0,
                    }
                )
                blobs.append({"job_id": job_id, "kind": "input", "data": notebook, "updated": created})
                ids.append(job_id)
            with store.engine.begin() as conn:
                conn.execute(insert(jobs), rows)
                conn.execute(insert(job_blobs), blobs)
        return ids
    finally:
        store.close()


# -- recording -----------------------------------------------------------------------------------------


@dataclass
class Record:
    """Every request: (kind, seconds, outcome) with outcome ok | limit | error, and the errors' text."""

    samples: list[tuple[str, float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last: str = ""  # the outcome of the latest call

    def call(self, kind: str, send: Callable[[], httpx.Response]) -> dict | None:
        """Send one request; the JSON body when it succeeded, else None (its outcome is recorded)."""
        start = time.perf_counter()
        try:
            response = send()
            elapsed = time.perf_counter() - start
            outcome, body = classify(response)
        except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
            elapsed, outcome, body = time.perf_counter() - start, "error", {"exception": repr(exc)}
        self.samples.append((kind, elapsed, outcome))
        self.last = outcome
        if outcome == "ok":
            return body
        if outcome == "error" and len(self.errors) < 50:
            self.errors.append(f"{kind}: {json.dumps(body)[:300]}")
        return None

    def limits(self) -> int:
        return sum(1 for _, _, outcome in self.samples if outcome == "limit")

    def failures(self) -> int:
        return sum(1 for _, _, outcome in self.samples if outcome == "error")


def classify(response: httpx.Response) -> tuple[str, dict]:
    """ok / limit (a documented limit error, docs/limits.md) / error, and the body."""
    try:
        body = response.json()
    except ValueError:
        return "error", {"http": response.status_code, "text": response.text[:200]}
    if response.status_code != 200 or not isinstance(body, dict):
        return "error", {"http": response.status_code, "body": body}
    if body.get("status") == "error":  # admin envelope
        code, text = body.get("code"), " ".join(map(str, body.get("messages") or []))
    elif isinstance(body.get("error"), dict):  # portal envelope
        code, text = body["error"].get("code"), str(body["error"].get("message", ""))
    else:
        return "ok", body
    if any(mark in text for mark in LIMIT_ERRORS.get(code, ())):
        return "limit", body
    return "error", body


def percentiles(times: list[float]) -> dict[str, float]:
    """n, p50, p95, p99, max (ms), nearest rank."""
    if not times:
        return {"n": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(times)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))] * 1000

    return {
        "n": len(ordered),
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": ordered[-1] * 1000,
    }


class RssSampler(threading.Thread):
    """The server process's own RSS every 0.2 s; also the RSS when ``progress()`` (jobs ended so far)
    first reaches ``mark``, when ``at_mark`` is called once (e.g. to take a heap snapshot)."""

    def __init__(
        self,
        pid: int,
        progress: Callable[[], int] = lambda: 0,
        mark: int = 0,
        at_mark: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.progress, self.mark, self.at_mark = progress, mark, at_mark
        self.samples: list[int] = []
        self.at_mark_rss = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                rss = self.proc.memory_info().rss
                self.samples.append(rss)
                if self.mark and not self.at_mark_rss and self.progress() >= self.mark:
                    self.at_mark_rss = rss
                    if self.at_mark is not None:
                        self.at_mark()
            if self.stop.wait(0.2):
                return


class HeapSnapshots:
    """Heap snapshots of a server started through bench/traced.py, taken on SIGUSR1."""

    def __init__(self, directory: Path, frames: int) -> None:
        self.directory, self.frames, self.taken = directory, frames, 0

    def prefix(self) -> list[str]:
        return [
            sys.executable,
            "-X",
            f"tracemalloc={self.frames}",
            str(HERE / "traced.py"),
            str(self.directory),
        ]

    def take(self, pid: int, timeout: float = 300) -> Path:
        self.taken += 1
        os.kill(pid, signal.SIGUSR1)
        done = self.directory / f"heap-{self.taken}.done"
        deadline = time.monotonic() + timeout
        while not done.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no heap snapshot from the server within {timeout} s")
            time.sleep(0.2)
        return self.directory / f"heap-{self.taken}.tracemalloc"

    @staticmethod
    def growth(first: Path, second: Path, top: int = 25) -> list[str]:
        """The allocation sites that grew most from ``first`` to ``second``, one line each."""
        ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
        before = tracemalloc.Snapshot.load(str(first)).filter_traces(ignore)
        after = tracemalloc.Snapshot.load(str(second)).filter_traces(ignore)
        total = sum(s.size for s in after.statistics("filename")) - sum(
            s.size for s in before.statistics("filename")
        )
        lines = [f"traced heap grew {total / 2**20:+.2f} MiB between the snapshots"]
        for stat in after.compare_to(before, "traceback")[:top]:
            frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback)
            lines.append(f"{stat.size_diff / 2**10:+10.1f} KiB {stat.count_diff:+8d} blocks  {frames}")
        return lines


# -- the load ------------------------------------------------------------------------------------------


@dataclass
class Caller:
    username: str
    token: str
    item_id: str = ""


class Load:
    """The clients of one run against a started server."""

    def __init__(
        self,
        server: Server,
        callers: list[Caller],
        admin: Caller,
        *,
        clients: int,
        jobs: int,
        listers: int,
        seeded: list[str],
        timeout: float,
        poll_seconds: float = 1.0,
        list_pause: float = 0.05,
        rng: random.Random | None = None,
    ) -> None:
        self.server, self.callers, self.admin = server, callers, admin
        self.clients, self.jobs, self.listers = clients, jobs, listers
        self.seeded, self.timeout = seeded, timeout
        self.poll_seconds, self.list_pause = poll_seconds, list_pause
        self.rng = rng or random.Random(1)
        self.accepted: list[str] = []  # every jobId an executeNotebook answered (duplicates kept)
        self.ended: dict[str, dict] = {}  # jobId -> the job as last seen ended
        self.lost: list[str] = []
        self.records: list[Record] = []
        self.done = threading.Event()

    def client(self) -> httpx.Client:
        cafile = str(self.server.data_dir / "nbjobs-cert.pem")
        return httpx.Client(verify=ssl.create_default_context(cafile=cafile), timeout=120)

    def _get(
        self, http: httpx.Client, caller: Caller, path: str, **params: str
    ) -> Callable[[], httpx.Response]:
        return lambda: http.get(self.server.url + path, params={"f": "json", "token": caller.token, **params})

    def submitter(self, index: int, share: int, deadline: float) -> None:
        caller = self.callers[index % len(self.callers)]
        record = Record()
        self.records.append(record)
        mine: list[str] = []
        with self.client() as http:
            form = {"f": "json", "token": caller.token, "itemId": caller.item_id,
                    "notebookParameters": json.dumps({"x": index}), "updatePortalItem": "false"}  # fmt: skip
            for _ in range(share):
                while time.monotonic() < deadline:
                    answer = record.call(
                        "submit",
                        lambda: http.post(self.server.url + "/admin/notebooks/executeNotebook", data=form),
                    )
                    if answer is not None and "jobId" not in answer:
                        record.errors.append(f"submit: no jobId in {json.dumps(answer)[:300]}")
                        record.samples[-1] = ("submit", record.samples[-1][1], "error")
                        break
                    if answer is not None:
                        mine.append(answer["jobId"])
                        self.accepted.append(answer["jobId"])
                        break
                    if record.last != "limit":
                        break  # a failure: counted, not retried
                    time.sleep(0.5 + self.rng.random() * 0.5)  # the queue cap: submit again later
            pending = list(mine)
            while pending and time.monotonic() < deadline:
                # Jobs end about in the order they were sent: wait for the oldest, then the next at once.
                job = record.call("poll", self._get(http, caller, f"/admin/notebooks/jobs/{pending[0]}"))
                if job is not None and job.get("status") in ENDED:
                    self.ended[pending.pop(0)] = job
                else:
                    time.sleep(self.poll_seconds)
            self.lost.extend(pending)

    def lister(self, index: int) -> None:
        record = Record()
        self.records.append(record)
        admin, user = self.admin, self.callers[index % len(self.callers)]
        views: list[tuple[str, Caller, str, dict[str, str]]] = [
            ("list.first", admin, "/admin/system/jobs", {}),
            ("list.newest.detail", admin, "/admin/system/jobs", {"sortByDate": "true", "detail": "true"}),
            ("list.user", user, "/admin/notebooks/jobs", {"sortByDate": "true"}),
            ("list.1000", admin, "/admin/system/jobs", {"num": "1000"}),
        ]
        step = index
        with self.client() as http:
            while not self.done.is_set():
                kind, caller, path, params = views[step % len(views)]
                record.call(kind, self._get(http, caller, path, **params))
                for pool, label in ((self.seeded, "get.seeded"), (self.accepted, "get.new")):
                    if pool:
                        job_id = pool[self.rng.randrange(len(pool))]
                        record.call(label, self._get(http, admin, f"/admin/system/jobs/{job_id}"))
                step += 1
                self.done.wait(self.list_pause)

    def run(self) -> float:
        """Run every client; returns the wall time of the submitters."""
        deadline = time.monotonic() + self.timeout
        shares = [
            self.jobs // self.clients + (1 if i < self.jobs % self.clients else 0)
            for i in range(self.clients)
        ]
        listers = [threading.Thread(target=self.lister, args=(i,)) for i in range(self.listers)]
        submitters = [
            threading.Thread(target=self.submitter, args=(i, share, deadline))
            for i, share in enumerate(shares)
        ]
        start = time.monotonic()
        for thread in listers + submitters:
            thread.start()
        for thread in submitters:
            thread.join()
        wall = time.monotonic() - start
        self.done.set()
        for thread in listers:
            thread.join()
        return wall


def sign_in(server: Server, username: str) -> str:
    answer = server.http.post(
        server.url + "/sharing/rest/generateToken",
        data={"username": username, "password": PASSWORD, "client": "referer",
              "referer": "https://localhost", "f": "json"},
    ).json()  # fmt: skip
    return answer["token"]


def add_item(server: Server, caller: Caller) -> str:
    files = {"file": ("load.ipynb", nbformat.writes(trivial_notebook()).encode(), "application/x-ipynb+json")}
    answer = server.http.post(
        f"{server.url}/sharing/rest/content/users/{caller.username}/addItem",
        data={"f": "json", "token": caller.token, "type": "Notebook", "title": "load"},
        files=files,
    ).json()
    return answer["id"]


def run(
    data_dir: Path,
    *,
    clients: int,
    jobs: int,
    listers: int,
    seed_ended: int = 0,
    workers: int = 2,
    users: int = 0,
    queue_cap: int | None = None,
    timeout: float | None = None,
    check_seeded: bool = False,
    seed: int = 0,
    celery: bool = False,
    rss_mark: int = 500,
    trace: int = 0,
) -> dict[str, Any]:
    """One load run on a fresh server in ``data_dir``; the figures as a dict (see the module docstring)."""
    with contextlib.ExitStack() as stack:
        env = {} if queue_cap is None else {"NBJOBS_MAX_QUEUED_JOBS_PER_USER": str(queue_cap)}
        worker = stack.enter_context(distributed(data_dir, workers)) if celery else None
        if worker is not None:
            env.update(worker.env)
        return _run(
            data_dir, env, worker, clients=clients, jobs=jobs, listers=listers, seed_ended=seed_ended,
            workers=workers, users=users, timeout=timeout, check_seeded=check_seeded, seed=seed,
            rss_mark=rss_mark, trace=trace,
        )  # fmt: skip


@contextlib.contextmanager
def distributed(data_dir: Path, concurrency: int) -> Iterator[WorkerProcess]:
    """A fresh PostgreSQL database and Redis as broker; yields the `nbjobs worker` to run beside the
    server (its ``env`` is the server's too; ``start()`` it once the server has migrated the database)."""
    import psycopg
    import redis

    name = f"nbjobs_load_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(POSTGRES_URL, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {"NBJOBS_DATABASE_URL": f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}", "NBJOBS_BROKER_URL": REDIS_URL}
    worker = WorkerProcess(data_dir, concurrency, env)
    try:
        yield worker
    finally:
        worker.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


class WorkerProcess:
    """`nbjobs worker`, started by ``start()`` once the database exists."""

    def __init__(self, data_dir: Path, concurrency: int, env: dict[str, str]) -> None:
        self.data_dir, self.concurrency, self.env = data_dir, concurrency, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.data_dir / "worker.log").open("ab")
        self.proc = subprocess.Popen(
            [str(BIN / "nbjobs"), "worker", "--data-dir", str(self.data_dir / "worker"),
             "--concurrency", str(self.concurrency)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while " ready." not in (self.data_dir / "worker.log").read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.data_dir / "worker.log").read_text(errors="replace"))
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def _run(
    data_dir: Path,
    env: dict[str, str],
    worker: WorkerProcess | None,
    *,
    clients: int,
    jobs: int,
    listers: int,
    seed_ended: int,
    workers: int,
    users: int,
    timeout: float | None,
    check_seeded: bool,
    seed: int,
    rss_mark: int,
    trace: int,
) -> dict[str, Any]:
    rng = random.Random(seed)
    users = users or max(1, clients // 5)
    names = [f"load{i:02d}" for i in range(users)]
    started = time.monotonic()
    seeded = seed_ended_jobs(data_dir, seed_ended, names, environ=env, rng=rng)
    seed_seconds = time.monotonic() - started
    heaps = HeapSnapshots(data_dir / "heaps", trace) if trace else None
    server = Server.start(
        data_dir, workers=workers, pool=workers, prefix=heaps.prefix() if heaps else None, **env
    )
    if worker is not None:
        worker.start()
    try:
        callers = [Caller(name, sign_in(server, name)) for name in names]
        for caller in callers:
            caller.item_id = add_item(server, caller)
        admin = Caller("admin", sign_in(server, "admin"))
        time.sleep(min(5.0, 1.0 + workers))  # the warm pool fills
        load = Load(
            server, callers, admin, clients=clients, jobs=jobs, listers=listers, seeded=seeded,
            timeout=timeout or 300 + 3.0 * jobs / max(1, workers), rng=rng,
        )  # fmt: skip
        snapshots: list[Path] = []
        pid = server.proc.pid
        sampler = RssSampler(
            pid, lambda: len(load.ended), rss_mark,
            (lambda: snapshots.append(heaps.take(pid))) if heaps else None,
        )  # fmt: skip
        sampler.start()
        wall = load.run()
        sampler.stop.set()
        sampler.join()
        growth: list[str] = []
        if heaps is not None and snapshots:
            growth = HeapSnapshots.growth(snapshots[0], heaps.take(pid))
        check = Record()
        load.records.append(check)
        total = check.call("final.total", load._get(server.http, admin, "/admin/system/jobs", num="1"))
        unlisted: list[str] = []
        if check_seeded and seeded:
            listing = check.call(
                "final.list-all",
                load._get(server.http, admin, "/admin/system/jobs", num=str(len(seeded) + jobs + 100)),
            )
            listed = {j["jobId"] for j in (listing or {}).get("asyncJobs", [])}
            unlisted = [job_id for job_id in seeded if job_id not in listed]
        missing_seeded = 0
        for job_id in rng.sample(seeded, min(200, len(seeded))):
            job = check.call(
                "final.get-seeded", load._get(server.http, admin, f"/admin/system/jobs/{job_id}")
            )
            missing_seeded += job is None or job.get("status") not in ENDED
        # Not ended within the timeout: where are they now? Still queued or running (a slow machine) is
        # not the same as gone (a real loss: no such job, or in no known state).
        unended: Counter[str] = Counter()
        for job_id in load.lost:
            job = check.call(
                "final.get-unended", load._get(server.http, admin, f"/admin/system/jobs/{job_id}")
            )
            unended[(job or {}).get("status", "MISSING")] += 1
        figures = summarise(
            load, total, seeded, unlisted, missing_seeded, wall, seed_seconds, sampler.samples
        )
        figures["unended_by_status"] = dict(unended)
        mark_mib = round(sampler.at_mark_rss / 2**20, 1)
        figures["mode"] = "embedded" if worker is None else "celery"
        figures["server_rss_mib"]["mark_jobs"] = rss_mark
        figures["server_rss_mib"]["at_mark"] = mark_mib
        end_mib = figures["server_rss_mib"]["end"]
        figures["server_rss_mib"]["growth"] = round(end_mib / mark_mib - 1, 3) if mark_mib else None
        figures["heap_growth"] = growth
        return figures
    finally:
        server.stop()


def summarise(
    load: Load,
    total: dict | None,
    seeded: list[str],
    unlisted: list[str],
    missing_seeded: int,
    wall: float,
    seed_seconds: float,
    rss: list[int],
) -> dict[str, Any]:
    samples = [s for r in load.records for s in r.samples]
    by_kind: dict[str, list[float]] = {}
    for kind, elapsed, outcome in samples:
        if outcome == "ok":
            by_kind.setdefault(kind, []).append(elapsed)
    by_kind["list (all)"] = [t for k, ts in by_kind.items() if k.startswith("list.") for t in ts]
    by_kind["get (all)"] = [t for k, ts in by_kind.items() if k.startswith(("get.", "poll")) for t in ts]
    ended = list(load.ended.values())
    completed = [j for j in ended if j["status"] == "COMPLETED"]
    rate = 0.0
    if completed:
        span = max(j["endTime"] for j in completed) - min(j["dateCreated"] for j in completed)
        rate = len(completed) / max(span / 1000, 1e-3)
    new_in_store = (total or {}).get("total", -1) - len(seeded)
    accepted = len(set(load.accepted))
    return {
        "clients": load.clients, "jobs": load.jobs, "listers": load.listers, "seeded": len(seeded),
        "seed_seconds": round(seed_seconds, 1),
        "accepted": accepted,
        "ended": dict(Counter(j["status"] for j in ended)),
        "lost": len(load.lost),
        "duplicates": (len(load.accepted) - accepted) + max(0, new_in_store - accepted),
        "new_jobs_in_store": new_in_store,
        "limit_errors": sum(r.limits() for r in load.records),
        "failures": sum(r.failures() for r in load.records),
        "failure_samples": [e for r in load.records for e in r.errors][:20],
        "seeded_unlisted": len(unlisted),
        "seeded_not_gettable": missing_seeded,
        "requests": len(samples),
        "latency_ms": {k: percentiles(v) for k, v in sorted(by_kind.items())},
        "jobs_per_second": round(rate, 2),
        "wall_seconds": round(wall, 1),
        "server_rss_mib": {
            "start": round(rss[0] / 2**20, 1) if rss else 0,
            "end": round(rss[-1] / 2**20, 1) if rss else 0,
            "peak": round(max(rss) / 2**20, 1) if rss else 0,
        },
    }  # fmt: skip


def print_figures(f: dict[str, Any]) -> None:
    print(
        f"{f['clients']} clients, {f['jobs']} jobs, {f['listers']} listers, {f['seeded']} seeded ended jobs "
        f"(seeded in {f['seed_seconds']} s)"
    )
    print(
        f"accepted {f['accepted']}, ended {f['ended']}, not ended in time {f['lost']} "
        f"(now {f.get('unended_by_status', {})}), duplicates {f['duplicates']}, "
        f"limit errors {f['limit_errors']}, other failures {f['failures']}, "
        f"seeded unlisted/not gettable {f['seeded_unlisted']}/{f['seeded_not_gettable']}"
    )
    print(
        f"{f['jobs_per_second']} jobs/s completed; submitters' wall {f['wall_seconds']} s; "
        f"{f['requests']} requests"
    )
    rss = f["server_rss_mib"]
    growth = "" if rss.get("growth") is None else f"{rss['growth'] * 100:+.1f} %"
    print(
        f"server RSS ({f.get('mode', 'embedded')}) {rss['start']} -> {rss.get('at_mark', 0)} after "
        f"{rss.get('mark_jobs', 0)} jobs -> {rss['end']} MiB at the end (peak {rss['peak']}; "
        f"end vs mark {growth})"
    )
    print(f"{'request (ms)':22} {'n':>6} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    for kind, p in f["latency_ms"].items():
        print(f"{kind:22} {p['n']:6d} {p['p50']:8.1f} {p['p95']:8.1f} {p['p99']:8.1f} {p['max']:8.1f}")
    for line in f["failure_samples"]:
        print("FAILURE", line)
    for line in f.get("heap_growth", []):
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--listers", type=int, default=4)
    parser.add_argument("--seed-ended", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=0, help="default: one per 5 clients")
    parser.add_argument("--queue-cap", type=int, default=None, help="NBJOBS_MAX_QUEUED_JOBS_PER_USER")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before unended jobs are lost")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--celery", action="store_true", help="distributed mode: PostgreSQL, Redis, a worker")
    parser.add_argument("--rss-mark", type=int, default=500, help="jobs ended when the 'mark' RSS is read")
    parser.add_argument("--trace", type=int, default=0, metavar="FRAMES", help="tracemalloc heap comparison")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(
            Path(tmp), clients=args.clients, jobs=args.jobs, listers=args.listers, seed_ended=args.seed_ended,
            workers=args.workers, users=args.users, queue_cap=args.queue_cap, timeout=args.timeout,
            celery=args.celery, rss_mark=args.rss_mark, trace=args.trace,
        )  # fmt: skip
    print_figures(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if figures["lost"] or figures["duplicates"] or figures["failures"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
