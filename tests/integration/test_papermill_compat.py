"""papermill's habits, with real kernels: ``nbjobs run`` beside papermill's own CLI, and server jobs.

Where papermill is the reference, it runs in the same test on the same notebook and its answer is
the expected one (papermill is a test dependency).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nbjobs.models.jobs import FailureReason, JobInputs, JobStatus
from nbjobs.models.parameters import parse_parameters

from ..conftest import NOTEBOOKS
from .conftest import ADMIN

pytestmark = pytest.mark.kernel

BIN = Path(sys.executable).parent
STALE = NOTEBOOKS / "stale_outputs.ipynb"


def nbjobs(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "nbjobs"), "run", *args, "--no-progress-bar"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def papermill(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "papermill"), *args, "--no-progress-bar"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def texts(nb: nbformat.NotebookNode) -> str:
    return "".join(
        "".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )


def markers(nb: nbformat.NotebookNode) -> list[int]:
    tagged = ("nbjobs-error-marker", "papermill-error-cell-tag")
    return [i for i, c in enumerate(nb.cells) if set(tagged) & set(c.metadata.get("tags", []))]


def last_code_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return [c for c in nb.cells if c.cell_type == "code"][-1]


# --- 1. the output shows only what this run did ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "status", "reason"),
    [
        (("-p", "mode", "raise"), 1, "cell_error"),
        (("-p", "mode", "sleep", "--execution-timeout", "2"), 1, "timeout"),
        (("-p", "mode", "sleep", "--timeout", "0.05"), 1, "timeout"),
        (("-p", "mode", "die"), 138, "kernel_died"),
        (("-k", "no-such-kernel-xyz"), 1, "kernel_not_found"),
    ],
    ids=[
        "after-an-error",
        "after-a-cell-timeout",
        "after-a-run-timeout",
        "after-the-kernel-died",
        "kernel-never-started",
    ],
)
def test_run_output_has_no_outputs_or_counts_from_the_input_file(tmp_path, args, status, reason):
    out = tmp_path / "out.ipynb"
    result = nbjobs(str(STALE), str(out), *args)
    assert result.returncode == status, result.stderr
    assert f"FAILED [{reason}]" in result.stderr
    nb = read(out)
    assert "stale" not in texts(nb).lower()  # every stale output is gone, run or not
    never_ran = last_code_cell(nb)
    assert never_ran.outputs == [] and never_ran.execution_count is None


def test_a_job_that_fails_midway_and_one_stopped_by_its_deadline_keep_no_stale_output(make_app):
    app = make_app(max_execute_notebook_time_minutes=0.25)  # 15 s: the first cell runs first, when loaded too
    raised = app.service.submit(
        ADMIN, STALE.read_bytes(), inputs=JobInputs(notebook_parameters=parse_parameters({"mode": "raise"}))
    )
    stopped = app.service.submit(
        ADMIN, STALE.read_bytes(), inputs=JobInputs(notebook_parameters=parse_parameters({"mode": "sleep"}))
    )
    app.pool.run(burst=True)
    for job_id, reason in (
        (raised.job_id, FailureReason.CELL_ERROR),
        (stopped.job_id, FailureReason.TIMEOUT),
    ):
        job = app.store.get(job_id)
        assert job.status == JobStatus.FAILED and job.failure.reason == reason
        nb = nbformat.reads(app.store.get_blob(job_id, "output").decode(), as_version=4)
        assert "fresh first cell" in texts(nb) and "stale" not in texts(nb).lower()
        assert last_code_cell(nb).execution_count is None


def test_a_job_on_a_kernel_that_is_not_installed_returns_the_notebook_without_stale_outputs(make_app):
    app = make_app()
    nb = read(STALE)
    nb.metadata.kernelspec.name = "no-such-kernel-xyz"
    job = app.service.submit(ADMIN, nbformat.writes(nb).encode())
    app.pool.run(burst=True)
    job = app.store.get(job.job_id)
    assert job.failure.reason == FailureReason.KERNEL_NOT_FOUND
    out = nbformat.reads(app.store.get_blob(job.job_id, "output").decode(), as_version=4)
    assert "stale" not in texts(out).lower()
    assert all(c.execution_count is None for c in out.cells if c.cell_type == "code")


# --- 2. SystemExit ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["bare", "zero", "raise"])
def test_sys_exit_without_a_code_ends_the_run_successfully_as_papermill(tmp_path, how):
    mine, theirs = tmp_path / "mine.ipynb", tmp_path / "theirs.ipynb"
    result = nbjobs(str(NOTEBOOKS / "exits_with_sys_exit.ipynb"), str(mine), "-p", "how", how)
    reference = papermill(str(NOTEBOOKS / "exits_with_sys_exit.ipynb"), str(theirs), "-p", "how", how)
    assert reference.returncode == 0, reference.stderr
    assert result.returncode == 0, result.stderr
    assert "COMPLETED" in result.stderr
    nb = read(mine)
    assert markers(nb) == [] and "before exit" in texts(nb) and "after exit" not in texts(nb).lower()
    assert last_code_cell(nb).execution_count is None  # the cell after the exit did not run


def test_sys_exit_with_a_non_zero_code_is_a_failure_as_papermill(tmp_path):
    result = nbjobs(str(NOTEBOOKS / "exits_with_sys_exit.ipynb"), str(tmp_path / "o.ipynb"), "-p", "how", "3")
    reference = papermill(
        str(NOTEBOOKS / "exits_with_sys_exit.ipynb"), str(tmp_path / "p.ipynb"), "-p", "how", "3"
    )
    assert reference.returncode == 1
    assert result.returncode == 1 and "FAILED [cell_error] (cell 3): SystemExit: 3" in result.stderr


def test_a_job_ended_by_sys_exit_is_completed_and_one_with_code_3_failed(make_app):
    app = make_app()
    notebook = (NOTEBOOKS / "exits_with_sys_exit.ipynb").read_bytes()
    zero = app.service.submit(
        ADMIN, notebook, inputs=JobInputs(notebook_parameters=parse_parameters({"how": "zero"}))
    )
    three = app.service.submit(
        ADMIN, notebook, inputs=JobInputs(notebook_parameters=parse_parameters({"how": "3"}))
    )
    app.pool.run(burst=True)
    done = app.store.get(zero.job_id)
    assert done.status == JobStatus.COMPLETED and done.failure is None, done.failure
    nb = nbformat.reads(app.store.get_blob(zero.job_id, "output").decode(), as_version=4)
    assert markers(nb) == [] and "after exit" not in texts(nb).lower()
    failed = app.store.get(three.job_id)
    assert failed.status == JobStatus.FAILED and failed.failure.ename == "SystemExit"


# --- 3. kernel names --------------------------------------------------------------------------------


def test_kernel_named_python_and_a_notebook_without_kernelspec_run_on_python3(tmp_path):
    for name, printed in (("kernel_named_python", "kernel 3"), ("no_kernelspec", "no kernelspec ran")):
        out = tmp_path / f"{name}.ipynb"
        result = nbjobs(str(NOTEBOOKS / f"{name}.ipynb"), str(out))
        assert result.returncode == 0, result.stderr
        assert printed in texts(read(out))


def test_kernelspec_without_name_runs_on_the_default_kernel_with_a_warning(tmp_path):
    out = tmp_path / "o.ipynb"
    result = nbjobs(str(NOTEBOOKS / "kernelspec_without_name.ipynb"), str(out))
    assert result.returncode == 0, result.stderr
    assert (
        "warning: The notebook's kernelspec has no 'name'; it ran on the default kernel 'python3'"
        in result.stderr
    )
    nb = read(out)
    nbformat.validate(nb)  # the output names the kernel it ran on, so it is valid again
    assert nb.metadata.kernelspec.name == "python3" and "unnamed kernelspec ran" in texts(nb)


def test_jobs_resolve_python_and_warn_about_an_unnamed_kernelspec_in_their_results(make_app):
    app = make_app()
    python = app.service.submit(ADMIN, (NOTEBOOKS / "kernel_named_python.ipynb").read_bytes())
    unnamed = app.service.submit(ADMIN, (NOTEBOOKS / "kernelspec_without_name.ipynb").read_bytes())
    app.pool.run(burst=True)
    assert app.store.get(python.job_id).status == JobStatus.COMPLETED, app.store.get(python.job_id).failure
    job = app.store.get(unnamed.job_id)
    assert job.status == JobStatus.COMPLETED, job.failure
    assert job.results["warnings"] == [
        "The notebook's kernelspec has no 'name'; it ran on the default kernel 'python3'"
    ]


# --- 4. parameters on the command line ------------------------------------------------------------


PARAMETER_CASES = [
    ("-p", "a", "True", "-p", "b", "true", "-p", "c", "None", "-p", "d", "null", "-p", "e", "1_000"),
    ("-p", "f", "1e3", "-p", "g", "nan", "-p", "h", "0x10", "-p", "i", " 7 ", "-p", "j", "False"),
    ("-y", "a: 2026-01-02\nb: 1e3\nc: 1.0e+3\nd: [1, {x: null}]\ne: yes", "-r", "f", "True"),
    ("-y", "a: 1", "-y", "b: 2\na: 3", "-p", "c", "4", "-y", ""),
]


@pytest.mark.parametrize("args", PARAMETER_CASES, ids=["p-words", "p-numbers", "yaml", "yaml-merge"])
def test_parameters_arrive_with_the_values_papermill_gives_them(tmp_path, args):
    notebook = str(NOTEBOOKS / "prints_parameter_types.ipynb")
    result = nbjobs(notebook, str(tmp_path / "mine.ipynb"), *args)
    reference = papermill(notebook, str(tmp_path / "theirs.ipynb"), *args)
    assert result.returncode == 0 and reference.returncode == 0, (result.stderr, reference.stderr)
    assert texts(read(tmp_path / "mine.ipynb")) == texts(read(tmp_path / "theirs.ipynb"))


def test_a_yaml_parameters_file_reads_as_papermill_reads_it(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("a: 2026-01-02\nb: [1, 2]\nc: {k: on}\nd: ~\n")
    notebook = str(NOTEBOOKS / "prints_parameter_types.ipynb")
    result = nbjobs(notebook, str(tmp_path / "mine.ipynb"), "-f", str(params))
    reference = papermill(notebook, str(tmp_path / "theirs.ipynb"), "-f", str(params))
    assert result.returncode == 0 and reference.returncode == 0, (result.stderr, reference.stderr)
    assert texts(read(tmp_path / "mine.ipynb")) == texts(read(tmp_path / "theirs.ipynb"))
    assert "('2026-01-02', [1, 2], {'k': True}, None, 'unset'" in texts(read(tmp_path / "mine.ipynb"))


def test_bad_yaml_is_a_usage_error_without_a_traceback(tmp_path):
    result = nbjobs(str(NOTEBOOKS / "trivial.ipynb"), str(tmp_path / "o.ipynb"), "-y", "a: [1,")
    assert result.returncode == 2 and "-y is not valid YAML" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_mode_hides_the_inputs_as_papermill(tmp_path):
    notebook = str(NOTEBOOKS / "trivial.ipynb")
    result = nbjobs(notebook, str(tmp_path / "mine.ipynb"), "-p", "x", "5", "--report-mode")
    reference = papermill(notebook, str(tmp_path / "theirs.ipynb"), "-p", "x", "5", "--report-mode")
    assert result.returncode == 0 and reference.returncode == 0
    mine, theirs = read(tmp_path / "mine.ipynb"), read(tmp_path / "theirs.ipynb")

    def hidden(nb: nbformat.NotebookNode) -> list[bool]:
        return [
            c.metadata.get("jupyter", {}).get("source_hidden", False)
            for c in nb.cells
            if c.cell_type == "code"
        ]

    assert hidden(mine) == hidden(theirs) == [True, True, True]  # the injected cell too
    assert texts(mine) == texts(theirs) == "6\n"


# --- 5. working directory ---------------------------------------------------------------------------


def test_the_kernel_runs_in_the_callers_directory_as_under_papermill(tmp_path):
    caller = tmp_path / "caller"
    caller.mkdir()
    notebook = str(NOTEBOOKS / "prints_cwd.ipynb")
    result = nbjobs(notebook, str(tmp_path / "mine.ipynb"), cwd=caller)
    reference = papermill(notebook, str(tmp_path / "theirs.ipynb"), cwd=caller)
    assert result.returncode == 0 and reference.returncode == 0
    assert texts(read(tmp_path / "mine.ipynb")) == texts(read(tmp_path / "theirs.ipynb")) == f"cwd={caller}\n"
    chosen = nbjobs(notebook, str(tmp_path / "chosen.ipynb"), "--cwd", str(tmp_path), cwd=caller)
    assert texts(read(tmp_path / "chosen.ipynb")) == f"cwd={tmp_path}\n", chosen.stderr


# --- 6. error markers, timeouts, dead kernels ---------------------------------------------------------


def test_markers_from_papermill_and_an_earlier_run_are_removed_before_the_run(tmp_path):
    out = tmp_path / "o.ipynb"
    result = nbjobs(str(NOTEBOOKS / "stale_error_markers.ipynb"), str(out))
    assert result.returncode == 0, result.stderr
    nb = read(out)
    assert markers(nb) == [] and texts(nb) == "one\ntwo\nthree\n"
    assert [c.cell_type for c in nb.cells] == ["code", "code", "code", "markdown"]  # other markdown stays


def test_a_failed_run_over_old_markers_has_only_its_own(tmp_path):
    first, second = tmp_path / "first.ipynb", tmp_path / "second.ipynb"
    papermill(str(STALE), str(first), "-p", "mode", "raise")
    assert len(markers(read(first))) == 2  # papermill left its two
    result = nbjobs(str(first), str(second), "-p", "mode", "raise")
    assert result.returncode == 1
    nb = read(second)
    tags = [nb.cells[i].metadata.tags for i in markers(nb)]
    assert tags == [["nbjobs-error-marker"], ["nbjobs-error-marker"]]


def test_a_cell_that_timed_out_shows_the_interruption_in_its_outputs(tmp_path):
    out = tmp_path / "o.ipynb"
    result = nbjobs(str(STALE), str(out), "-p", "mode", "sleep", "--execution-timeout", "2")
    assert result.returncode == 1
    nb = read(out)
    timed_out = [c for c in nb.cells if c.cell_type == "code" and "time.sleep" in c.source][0]
    assert timed_out.outputs[-1].output_type == "error"
    assert timed_out.outputs[-1].ename == "CellTimeoutError"
    assert "execution timeout of 2 seconds" in timed_out.outputs[-1].evalue
    assert len(markers(nb)) == 2  # the banner points at it, as for an error


def test_a_dead_kernel_exits_138_as_papermill(tmp_path):
    result = nbjobs(str(STALE), str(tmp_path / "o.ipynb"), "-p", "mode", "die")
    reference = papermill(str(STALE), str(tmp_path / "p.ipynb"), "-p", "mode", "die")
    assert reference.returncode == 138
    assert result.returncode == 138 and "FAILED [kernel_died]" in result.stderr


# --- 7. nothing of the server stack ----------------------------------------------------------------

SERVER_STACK = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "celery",
    "kombu",
    "redis",
    "psycopg",
)
SERVER_MODULES = (
    "nbjobs.web",
    "nbjobs.store",
    "nbjobs.service",
    "nbjobs.roots",
    "nbjobs.dispatch",
    "nbjobs.cli.serve",
)


def test_nbjobs_run_imports_nothing_of_the_server_stack(tmp_path):
    seen = tmp_path / "modules.json"
    script = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: open({str(seen)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
        "from nbjobs.cli import main\n"
        f"main(['run', {str(NOTEBOOKS / 'trivial.ipynb')!r}, {str(tmp_path / 'o.ipynb')!r}])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    modules = json.loads(seen.read_text())
    assert "nbjobs.execution.engine" in modules  # it did run
    assert [m for m in modules if m.split(".")[0] in SERVER_STACK] == []
    assert [m for m in modules if m.startswith(SERVER_MODULES)] == []
    assert [
        m
        for m in modules
        if m.startswith("nbjobs.cli.") and m not in ("nbjobs.cli.run", "nbjobs.cli.papermill_params")
    ] == []


def test_web_tool_runs_clear_stale_outputs_and_read_outputs_after_sys_exit(make_app):
    # a web tool job is a job with output names: the same engine path, values read after the last cell
    app = make_app()
    stale = app.service.submit(
        ADMIN,
        STALE.read_bytes(),
        inputs=JobInputs(notebook_parameters=parse_parameters({"mode": "raise"}), output_names=("mode",)),
    )
    exited = app.service.submit(
        ADMIN,
        (NOTEBOOKS / "exits_with_sys_exit.ipynb").read_bytes(),
        inputs=JobInputs(notebook_parameters=parse_parameters({"how": "raise"}), output_names=("how",)),
    )
    app.pool.run(burst=True)
    failed = app.store.get(stale.job_id)
    assert failed.failure.reason == FailureReason.CELL_ERROR
    nb = nbformat.reads(app.store.get_blob(stale.job_id, "output").decode(), as_version=4)
    assert "stale" not in texts(nb).lower() and last_code_cell(nb).execution_count is None
    done = app.store.get(exited.job_id)
    assert done.status == JobStatus.COMPLETED, done.failure
    assert done.results["outputValues"] == {"how": {"value": "raise"}}
