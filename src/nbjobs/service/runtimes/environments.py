"""Asking a runtime's Python environment about itself: can it start a kernel, which libraries it holds.

Each question runs the environment's own interpreter in a subprocess with a timeout, so a broken or
foreign environment can never break the server. ``FakeEnvironments`` answers the same questions from a
table, for unit tests.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any, Protocol

PROBE_SCRIPT = "import ipykernel, sys; print(sys.version)"
# importlib.metadata is in every Python >= 3.8, so this works in a venv created --without-pip.
LIBRARIES_SCRIPT = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted({(d.metadata['Name'] or '', d.version) for d in m.distributions()})))"
)


@dataclass(frozen=True)
class Probe:
    """The answer of one interpreter: ``ok`` with its ``version``, else ``error`` saying why not."""

    ok: bool
    version: str = ""
    error: str = ""


class Environments(Protocol):
    def probe(self, python: str) -> Probe:
        """Does ``python`` exist, run, and import ipykernel?"""

    def libraries(self, python: str) -> list[tuple[str, str]]:
        """(name, version) of every distribution ``python`` can import, sorted; OSError if it cannot run."""


def executable_problem(python: str) -> str:
    """Why ``python`` cannot be a runtime's interpreter ("" when it can): it must be an executable file."""
    if not python:
        return "no python given"
    if not os.path.isabs(python):
        return f"python '{python}' is not an absolute path"
    if not os.path.exists(python):
        return f"python '{python}' does not exist"
    if os.path.isdir(python) or not os.access(python, os.X_OK):
        return f"python '{python}' is not an executable file"
    return ""


class SubprocessEnvironments:
    """The real thing: runs ``<python> -c …`` with a timeout."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout

    def probe(self, python: str) -> Probe:
        problem = executable_problem(python)
        if problem:
            return Probe(False, error=problem)
        try:
            done = self._run(python, PROBE_SCRIPT)
        except subprocess.TimeoutExpired:
            return Probe(False, error=f"python '{python}' did not answer within {self.timeout:g} s")
        except OSError as exc:
            return Probe(False, error=f"python '{python}' cannot run: {exc.strerror or exc}")
        if done.returncode != 0:
            return Probe(False, error=f"python '{python}' cannot import ipykernel: {_last_line(done.stderr)}")
        return Probe(True, version=done.stdout.strip().splitlines()[0] if done.stdout.strip() else "")

    def libraries(self, python: str) -> list[tuple[str, str]]:
        problem = executable_problem(python)
        if problem:
            raise OSError(problem)
        try:
            done = self._run(python, LIBRARIES_SCRIPT)
        except subprocess.TimeoutExpired as exc:
            raise OSError(f"python '{python}' did not answer within {self.timeout:g} s") from exc
        if done.returncode != 0:
            raise OSError(f"python '{python}' cannot list its libraries: {_last_line(done.stderr)}")
        pairs: list[Any] = json.loads(done.stdout)
        return [(str(name), str(version)) for name, version in pairs if name]

    def _run(self, python: str, script: str) -> subprocess.CompletedProcess[str]:
        # -I: ignore PYTHON* variables and the user site, so the answer is the environment's own.
        return subprocess.run(
            [python, "-I", "-c", script],
            capture_output=True,
            text=True,
            timeout=self.timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )


class FakeEnvironments:
    """Answers from a table: ``good`` pythons import ipykernel and hold ``libs``; any other is broken."""

    def __init__(self, good: dict[str, list[tuple[str, str]]] | None = None) -> None:
        self.good = dict(good or {})
        self.library_calls = 0

    def probe(self, python: str) -> Probe:
        if python in self.good:
            return Probe(True, version="3.11.0 (fake)")
        return Probe(False, error=f"python '{python}' cannot import ipykernel: ModuleNotFoundError")

    def libraries(self, python: str) -> list[tuple[str, str]]:
        self.library_calls += 1
        if python not in self.good:
            raise OSError(f"python '{python}' does not exist")
        return sorted(self.good[python])


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"
