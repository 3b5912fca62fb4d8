"""Shared fixtures: stores of every kind, golden notebooks, settings with short timings."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).parent / "notebooks"
IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("NBJOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def notebook_bytes(name: str) -> bytes:
    """A golden notebook from tests/notebooks, named by its behaviour."""
    return (NOTEBOOKS / name).read_bytes()


@pytest.fixture
def golden():
    return notebook_bytes


def _postgres_admin():
    try:
        import psycopg

        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true but unreachable at {POSTGRES_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}: {exc}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin = _postgres_admin()
    name = f"nbjobs_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
