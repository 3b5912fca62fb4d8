"""Private PostgreSQL, Redis and RabbitMQ instances the outage tests may stop and start at will.

The machine's shared services serve other test runs at the same time, so they are never restarted;
each fixture here starts its own instance on free ports in a temporary directory and removes it at
teardown. A missing binary skips locally and fails under ``CI=true`` (``cluster.unavailable``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import unavailable, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as(user: str) -> list[str]:
    """Run as ``user`` when we are root (postgres and rabbitmq refuse root or own their files)."""
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def _owned_tmp(prefix: str, user: str) -> Path:
    """A temp dir outside pytest's root-only tree, owned by ``user`` (when we are root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class PrivatePostgres:
    """A throwaway cluster (initdb, trust auth on 127.0.0.1, fsync off); ``restart``/``stop``/``start``."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            unavailable("PostgreSQL binaries (/usr/lib/postgresql/*/bin/pg_ctl)", FileNotFoundError("pg_ctl"))
        self.bin = Path(bins[-1]).parent
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.root = _owned_tmp("nbjobs-outage-pg-", self.user)
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        initdb = [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8"]  # fmt: skip
        self._run(initdb)
        self.start()

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(_as(self.user) + argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            unavailable("a private PostgreSQL", RuntimeError(done.stderr or done.stdout))

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                   "-w", "-t", "60", "-o", options, *args])  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def restart(self) -> None:
        """What ``pg_ctlcluster … restart`` does: a fast stop (sessions killed), then a start."""
        self._ctl("-m", "fast", "restart")

    def close(self) -> None:
        subprocess.run(_as(self.user) + [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                       "immediate", "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """``redis-server`` without persistence as a subprocess; a restart comes back empty."""

    def __init__(self) -> None:
        self.exe = shutil.which("redis-server")
        if self.exe is None:
            unavailable("redis-server", FileNotFoundError("redis-server"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        argv = [str(self.exe), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _port_open(self.port), 30, "the private redis-server to listen")

    def stop(self) -> None:
        """``kill -9``: whatever the broker held is gone (no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()


class PrivateRabbit:
    """A private RabbitMQ node (its own name, ports, mnesia and config); never the shared one."""

    def __init__(self) -> None:
        libexec = Path("/usr/lib/rabbitmq/bin")
        server = libexec / "rabbitmq-server" if (libexec / "rabbitmq-server").exists() else None
        server_path = str(server) if server else shutil.which("rabbitmq-server")
        ctl_path = str(libexec / "rabbitmqctl") if server else shutil.which("rabbitmqctl")
        if server_path is None or ctl_path is None:
            unavailable("rabbitmq-server", FileNotFoundError("rabbitmq-server"))
        self.server, self.ctl = str(server_path), str(ctl_path)
        self.user = "rabbitmq" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.root = _owned_tmp("nbjobs-outage-rmq-", self.user)
        self.node = f"nbjobs-outage-{uuid.uuid4().hex[:8]}@localhost"
        self.port, self.dist_port = free_port(), free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        # Our own config file: the machine's names the shared node's listener (5672).
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "env.conf").write_text("")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.user)
            for name in ("rabbitmq.conf", "enabled_plugins", "env.conf"):
                os.chown(self.root / name, entry.pw_uid, entry.pw_gid)
        home = pwd.getpwnam(self.user).pw_dir  # its Erlang cookie, shared by server and CLI
        self.env = [
            "env", f"HOME={home}", f"RABBITMQ_NODENAME={self.node}", f"RABBITMQ_NODE_PORT={self.port}",
            f"RABBITMQ_DIST_PORT={self.dist_port}", f"RABBITMQ_MNESIA_BASE={self.root / 'mnesia'}",
            f"RABBITMQ_LOG_BASE={self.root / 'log'}", f"RABBITMQ_PID_FILE={self.root / 'pid'}",
            f"RABBITMQ_ENABLED_PLUGINS_FILE={self.root / 'enabled_plugins'}",
            f"RABBITMQ_CONFIG_FILE={self.root / 'rabbitmq.conf'}",
            f"RABBITMQ_CONF_ENV_FILE={self.root / 'env.conf'}",
        ]  # fmt: skip
        self.start()

    def _cmd(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _as(self.user) + self.env + list(argv), capture_output=True, text=True, timeout=timeout,
            cwd=self.root,
        )  # fmt: skip

    def start(self) -> None:
        started = self._cmd(self.server, "-detached")
        if started.returncode != 0:
            unavailable("a private RabbitMQ node", RuntimeError(started.stderr or started.stdout))
        wait_until(lambda: (self.root / "pid").exists(), 60, "the private RabbitMQ node's pid file")
        waited = self._cmd(self.ctl, "-n", self.node, "wait", str(self.root / "pid"), "--timeout", "90")
        if waited.returncode != 0 or not _port_open(self.port):
            unavailable("a private RabbitMQ node", RuntimeError(waited.stderr or waited.stdout))

    def stop(self) -> None:
        self._cmd(self.ctl, "-n", self.node, "stop", timeout=60)
        wait_until(lambda: not _port_open(self.port), 30, "the private RabbitMQ node to stop")
        (self.root / "pid").unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self._cmd(self.ctl, "-n", self.node, "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(name="private_postgres")
def private_postgres_fixture() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        yield pg
    finally:
        pg.close()


@pytest.fixture(name="private_redis")
def private_redis_fixture() -> Iterator[PrivateRedis]:
    redis = PrivateRedis()
    try:
        yield redis
    finally:
        redis.close()


@pytest.fixture(name="private_rabbitmq")
def private_rabbitmq_fixture() -> Iterator[PrivateRabbit]:
    rabbit = PrivateRabbit()
    try:
        yield rabbit
    finally:
        rabbit.close()


@pytest.fixture(name="small_tmpfs")
def small_tmpfs_fixture() -> Iterator[Path]:
    """A 12 MiB tmpfs to fill (the data dir of a disk-full test); unmounted at teardown."""
    mount = Path(tempfile.mkdtemp(prefix="nbjobs-outage-disk-", dir="/tmp"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m,mode=0711", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        mount.rmdir()
        unavailable("a tmpfs mount (needs root)", RuntimeError(done.stderr))
    try:
        yield mount
    finally:
        for _ in range(20):  # a straggling handle keeps it busy for a moment
            if subprocess.run(["umount", str(mount)], capture_output=True).returncode == 0:
                break
            time.sleep(0.25)
        shutil.rmtree(mount, ignore_errors=True)
