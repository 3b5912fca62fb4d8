"""The kernel's CPU time is measured by the runner and recorded in the job's results (cpuSeconds),
which the usage statistics sum."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from nbjobs.models.jobs import JobStatus

from .conftest import ADMIN

pytestmark = pytest.mark.kernel


def _busy(seconds: float) -> bytes:
    source = f"import time\nend = time.process_time() + {seconds!r}\nwhile time.process_time() < end:\n    0"
    nb = new_notebook(cells=[new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(nb).encode()


def test_a_jobs_cpu_time_is_recorded(make_app):
    app = make_app()
    busy = app.service.submit(ADMIN, _busy(0.6))
    idle = app.service.submit(ADMIN, _busy(0.0))
    app.pool.run(burst=True)
    spent, rested = app.store.get(busy.job_id), app.store.get(idle.job_id)
    assert spent.status == rested.status == JobStatus.COMPLETED
    assert 0.6 <= spent.results["cpuSeconds"] < 5
    assert rested.results.get("cpuSeconds", 0) < spent.results["cpuSeconds"] - 0.5
