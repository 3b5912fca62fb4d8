"""Real kernels, real SQLite: every way a job can end, and the bad inputs the core must survive."""

from __future__ import annotations

import json
import time

import nbformat
import psutil
import pytest
from sqlalchemy import select, update

from nbjobs.models.jobs import FailureReason, JobInputs, JobStatus
from nbjobs.models.parameters import parse_parameters
from nbjobs.store.tables import jobs

from .conftest import ADMIN

pytestmark = pytest.mark.kernel


def run_to_end(app, notebook: bytes, **submit):
    job = app.service.submit(ADMIN, notebook, **submit)
    app.pool.run(burst=True)
    return app.store.get(job.job_id)


def output_of(app, job_id: str):
    return nbformat.reads(app.store.get_blob(job_id, "output").decode(), as_version=4)


def test_trivial_notebook_completes_with_injected_parameters(make_app, golden):
    app = make_app()
    job = run_to_end(
        app,
        golden("parameters.ipynb"),
        parameters=parse_parameters(json.dumps(
            {
                "name": "__import__('os').getcwd()",
                "count": 3,
                "ratio": 0.5,
                "flag": True,
                "items": [1, "two"],
                "config": {"k": None},
                "when": "2026-11-28T06:00:00Z",
            }
        )),
    )  # fmt: skip
    assert job.status == JobStatus.COMPLETED and job.failure is None
    assert job.progress_percent == 100 and job.start_time > 0 and job.end_time >= job.start_time
    nb = output_of(app, job.job_id)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    # a code-looking string stays a string; every type arrives typed
    assert "\"__import__('os').getcwd()\" 3 0.5 True [1, 'two'] {'k': None} 2026-11-28T06:00:00Z" in printed
    assert "('int', 'float', 'bool')" in printed
    # saveInjectedParameters defaults to false: the cell is gone from the saved notebook
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)


def test_save_injected_parameters_keeps_the_cell_right_after_parameters(make_app, golden):
    app = make_app()
    job = run_to_end(
        app,
        golden("trivial.ipynb"),
        inputs=JobInputs(save_injected_parameters=True, notebook_parameters=parse_parameters({"x": 41})),
    )
    nb = output_of(app, job.job_id)
    assert nb.cells[0].metadata.tags == ["parameters"]
    assert nb.cells[1].metadata.tags == ["injected-parameters"] and "x = 41" in nb.cells[1].source
    assert nb.cells[2].outputs[0].text == "42\n"


def test_existing_injected_parameters_cell_is_replaced(make_app, golden):
    app = make_app()
    job = run_to_end(
        app,
        golden("injected_slot.ipynb"),
        inputs=JobInputs(save_injected_parameters=True, notebook_parameters=parse_parameters({"x": "fresh"})),
    )
    nb = output_of(app, job.job_id)
    assert len(nb.cells) == 3 and "stale" not in nb.cells[1].source
    assert nb.cells[2].outputs[0].text == "fresh\n"


def test_progress_is_recorded_per_cell(make_app, golden):
    app = make_app()
    app.pool.start(1)
    job = app.service.submit(ADMIN, golden("many_cells.ipynb"))
    seen = set()
    end = time.monotonic() + 60
    while (current := app.store.get(job.job_id)).status != JobStatus.COMPLETED and time.monotonic() < end:
        seen.add((current.progress_percent, current.progress_message))
        time.sleep(0.005)
    assert current.progress_percent == 100 and current.progress_message == "Executed 8 of 8 cells"
    assert current.results["cellsExecuted"] == 8


def test_cell_error_fails_with_cell_details_and_error_marker(make_app, golden):
    app = make_app()
    job = run_to_end(app, golden("raises.ipynb"))
    assert job.status == JobStatus.FAILED
    f = job.failure
    assert f.reason == FailureReason.CELL_ERROR and f.cell_index == 1
    assert (
        f.ename == "ValueError"
        and f.evalue == "boom at cell 1"
        and any("ValueError" in t for t in f.traceback)
    )
    nb = output_of(app, job.job_id)
    assert "nbjobs-error-marker" in nb.cells[0].metadata.tags  # papermill-style banner at the top
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert "before\n" in texts and "never\n" not in texts


@pytest.mark.parametrize(
    ("notebook", "reason", "words"),
    [
        ("not_a_notebook.ipynb", FailureReason.INVALID_NOTEBOOK, "not a notebook"),
        ("invalid_schema.ipynb", FailureReason.INVALID_NOTEBOOK, "not valid nbformat"),
        ("unknown_kernel.ipynb", FailureReason.KERNEL_NOT_FOUND, "no-such-kernel-xyz"),
        ("exits.ipynb", FailureReason.KERNEL_DIED, "kernel died"),
    ],
)
def test_bad_notebooks_fail_with_a_clear_reason_and_the_server_keeps_serving(
    make_app, golden, notebook, reason, words
):
    app = make_app()
    job = run_to_end(app, golden(notebook))
    assert job.status == JobStatus.FAILED and job.failure.reason == reason
    assert words in job.failure.message
    after = run_to_end(app, golden("trivial.ipynb"))
    assert after.status == JobStatus.COMPLETED


def test_parameters_that_are_not_an_object_fail_the_stored_job(make_app, golden):
    # The service refuses them at submit; a row that holds them anyway (older client, hand edit) still ends.
    app = make_app()
    job = app.service.submit(ADMIN, golden("trivial.ipynb"))
    with app.store.engine.begin() as conn:  # portable SQL: this test also runs on PostgreSQL
        inputs = conn.execute(select(jobs.c.inputs).where(jobs.c.job_id == job.job_id)).scalar_one()
        inputs = {**inputs, "notebookParameters": [1, 2]}
        conn.execute(update(jobs).where(jobs.c.job_id == job.job_id).values(inputs=inputs))
    app.pool.run(burst=True)
    ended = app.store.get(job.job_id)
    assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.INVALID_PARAMETERS


def test_output_flood_is_capped_and_the_worker_memory_stays_bounded(make_app, golden):
    app = make_app(max_cell_output_bytes=1024 * 1024, max_notebook_output_bytes=2 * 1024 * 1024)
    app.pool.start(1)
    job = app.service.submit(ADMIN, golden("floods_output.ipynb"))
    peak = 0
    me = psutil.Process()
    while not (current := app.store.get(job.job_id)).ended:
        procs = [me, *me.children(recursive=True)]
        runner = [p for p in procs if "nbjobs.execution.runner" in " ".join(_cmdline(p))]
        peak = max([peak, *(p.memory_info().rss for p in runner)])
        time.sleep(0.05)
    assert current.status == JobStatus.COMPLETED, current.failure
    assert current.results["outputTruncated"] is True and current.results["truncatedCells"] == [0]
    blob = app.store.get_blob(job.job_id, "output")
    assert len(blob) < 3 * 1024 * 1024  # 200 MB printed, ~1 MB kept
    assert "output truncated" in blob.decode() and "after flood" in blob.decode()
    assert peak < 150 * 1024 * 1024, f"runner peaked at {peak / 2**20:.0f} MiB"


def _cmdline(proc):
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def test_whole_run_deadline_fails_with_timeout_and_keeps_partial_output(make_app, golden):
    # the server cap (15 s: room for a kernel start on a loaded machine, ~0.4 s quiet) beats the job's 10 min
    app = make_app(max_execute_notebook_time_minutes=0.25)
    job = app.service.submit(ADMIN, golden("sleeps.ipynb"), inputs=JobInputs(execution_timeout_minutes=10))
    started = time.monotonic()
    app.pool.run(burst=True)
    ended = app.store.get(job.job_id)
    assert ended.status == JobStatus.FAILED and ended.failure.reason == FailureReason.TIMEOUT
    assert "time limit" in ended.failure.message
    assert time.monotonic() - started < 120  # the cap, plus the staged stop and slack; far below 10 min
    assert printed_text(output_of(app, job.job_id)) == "sleeping\n"  # output up to the stop is kept


def printed_text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_named_output_variables_are_read_back_as_json(make_app, golden):
    app = make_app()
    inputs = JobInputs(notebook_parameters=parse_parameters({"radius": 2.0}),
                       output_names=("area", "label", "when", "rows", "shape", "missing"))  # fmt: skip
    job = run_to_end(app, golden("outputs.ipynb"), inputs=inputs)
    # one requested output was never set: the job fails and says which (the others are still read)
    assert job.status == JobStatus.FAILED and job.failure.reason == FailureReason.OUTPUT_MISSING
    assert job.failure.message.startswith("Output not set by the notebook: 'missing' (NameError")
    values = job.results["outputValues"]
    assert abs(values["area"]["value"] - 12.566) < 0.001
    assert values["label"] == {"value": "r=2.0"}
    assert values["when"] == {"value": "2026-11-28"}
    assert values["rows"] == {"value": [{"a": 1}, {"a": 2}]}
    assert values["shape"] == {"value": {"type": "circle"}}  # objects with to_json (FeatureSet, RecordSet)
    assert values["missing"]["error"].startswith("NameError")
