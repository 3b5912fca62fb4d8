"""The notebook output cap bounds the bytes stored, whatever the output looks like (real kernels)."""

from __future__ import annotations

import json

import nbformat
import pytest

from nbjobs.models.jobs import JobStatus
from tests.integration.conftest import ADMIN

CAP = 64 * 1024
OVERHEAD = 4 * 1024  # output JSON skeletons, the truncation notice


def _notebook(*sources: str) -> bytes:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(nb).encode()


@pytest.mark.parametrize(
    "flood",
    [
        "for i in range(100_000):\n    print('x')",  # short lines: each is a JSON string of its own
        "print('\\x01' * 300_000)",  # control characters: six bytes each as JSON escapes
        "print('\\U0001F600' * 100_000)",  # four bytes each as UTF-8
    ],
    ids=["short-lines", "control-chars", "emoji"],
)
def test_stored_notebook_stays_within_the_notebook_output_cap(make_app, flood: str):
    app = make_app(max_cell_output_bytes=1024 * 1024, max_notebook_output_bytes=CAP)
    source = _notebook("print('before')", flood, "print('after')")
    job = app.service.submit(ADMIN, source)
    app.pool.run(burst=True)
    ended = app.store.get(job.job_id)
    # docs/jobs.md: a capped run still ends as it would have, COMPLETED here, with the cut recorded
    assert ended.status == JobStatus.COMPLETED, ended.failure
    assert ended.results["outputTruncated"] is True and ended.results["truncatedCells"][0] == 1
    blob = app.store.get_blob(job.job_id, "output")
    assert len(source) + CAP // 2 < len(blob) <= len(source) + CAP + OVERHEAD
    stored = nbformat.reads(blob.decode(), as_version=4)
    texts = ["".join(o.get("text", "") for o in c.outputs) for c in stored.cells]
    assert texts[0] == "before\n"
    assert "[nbjobs] output truncated: the notebook exceeded the limit of 65536 bytes" in texts[1]
    assert texts[2] == ""  # the notebook budget is spent: later output is dropped
    assert json.loads(blob)["cells"][1]["outputs"]  # still a valid notebook with the kept output
