"""A bad data dir at start: `nbjobs serve` exits at once with one clear line, listens on nothing and
changes nothing (no half-started server, no "migration" of a database it does not understand)."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

NBJOBS = str(Path(sys.executable).with_name("nbjobs"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root`` with its mode and content hash (directories by mode only)."""
    seen = {}
    for path in sorted([root, *root.rglob("*")]):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        seen[str(path.relative_to(root))] = (st.st_mode, digest)
    return seen


def serve(data_dir: Path) -> tuple[subprocess.CompletedProcess[str], int, float]:
    port = free_port()
    env = {**os.environ, "NBJOBS_ADMIN_PASSWORD": "startup-test-password", "NBJOBS_WORKERS": "1"}
    started = time.monotonic()
    done = subprocess.run(
        [NBJOBS, "serve", "--data-dir", str(data_dir), "--port", str(port)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    return done, port, time.monotonic() - started


def assert_refused(done: subprocess.CompletedProcess[str], port: int, elapsed: float, *words: str) -> str:
    """Non-zero exit within seconds, one "Error:" line naming the problem, no traceback, nothing listening."""
    assert done.returncode != 0, done.stdout
    assert elapsed < 60  # it exits by itself (a server that started would run into the timeout)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    for word in words:
        assert word in errors[0], errors[0]
    assert "serving at" not in done.stdout
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "something listens on the server's port"
    return errors[0]


def make_database(data_dir: Path) -> Path:
    made = subprocess.run([NBJOBS, "db", "upgrade", "--data-dir", str(data_dir)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    return data_dir / "nbjobs.db"


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_database_file_is_one_clear_error_and_stays_as_it_was(tmp_path, damage):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database = data_dir / "nbjobs.db"
    if damage == "garbage":
        database.write_bytes(os.urandom(64 * 1024))
        words = ("cannot open the job store", "not a database")
    else:
        good = make_database(tmp_path / "good").read_bytes()
        database.write_bytes(good[: len(good) // 3])
        words = ("cannot open the job store", "malformed")
    before = snapshot(data_dir)
    assert_refused(*serve(data_dir), *words)
    assert snapshot(data_dir) == before


def test_a_database_from_a_newer_nbjobs_is_refused_untouched(tmp_path):
    data_dir = tmp_path / "data"
    database = make_database(data_dir)
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999_from_the_future'")
    conn.close()
    before = snapshot(data_dir)
    line = assert_refused(*serve(data_dir), "'0999_from_the_future'", "newer nbjobs")
    assert "newest known: 0" in line
    assert snapshot(data_dir) == before  # not migrated, not re-chmodded, no certificate made
    upgrade = subprocess.run([NBJOBS, "db", "upgrade", "--data-dir", str(data_dir)], capture_output=True,
                             text=True, timeout=60, check=False)  # fmt: skip
    assert upgrade.returncode != 0 and "Traceback" not in upgrade.stderr
    assert "'0999_from_the_future'" in upgrade.stderr and "newer nbjobs" in upgrade.stderr
    assert snapshot(data_dir) == before
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0999_from_the_future",)
    conn.close()


def test_a_file_where_the_data_dir_should_be_is_one_clear_error(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    for data_dir, words in (
        (blocker, ("is a file",)),
        (blocker / "sub", ("cannot create the data directory",)),
    ):
        assert_refused(*serve(data_dir), *words)
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 directory anyway; the file-in-the-way "
                    "case above covers an unusable data dir when the tests run as root")  # fmt: skip
def test_an_unreadable_data_dir_is_one_clear_error(tmp_path):
    data_dir = tmp_path / "data"
    make_database(data_dir)
    data_dir.chmod(0)
    try:
        assert_refused(*serve(data_dir), "cannot open the job store")
    finally:
        data_dir.chmod(0o700)
