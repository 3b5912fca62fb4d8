"""Kernel readiness: a kernel slower than a second to start must still be detected, without a flood."""

from __future__ import annotations

import json
import os
import sys
import time

import psutil
import pytest

from nbjobs.execution.kernels import WarmKernel

pytestmark = pytest.mark.kernel


@pytest.fixture
def slow_kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec whose kernel needs ~2.5 s before it answers anything."""
    spec = tmp_path / "kernels" / "slow-python"
    spec.mkdir(parents=True)
    launcher = f'sleep 2.5; exec {sys.executable} -m ipykernel_launcher -f "$0"'
    (spec / "kernel.json").write_text(json.dumps({
        "argv": ["sh", "-c", launcher, "{connection_file}"],
        "display_name": "slow", "language": "python",
    }))  # fmt: skip
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    return "slow-python"


def test_a_slow_kernel_is_ready_once_and_then_idle(slow_kernel, tmp_path):
    started = time.monotonic()
    warm = WarmKernel.start(slow_kernel, str(tmp_path), dict(os.environ))
    try:
        assert time.monotonic() - started < 45  # found ready, not at the 60 s give-up (~3 s quiet)
        assert warm.alive()
        kernel = psutil.Process(warm.pid)
        kernel.cpu_percent(None)
        time.sleep(1.5)
        # A client that lags one reply behind keeps the kernel answering kernel_info forever.
        assert kernel.cpu_percent(None) < 20
    finally:
        warm.discard()
