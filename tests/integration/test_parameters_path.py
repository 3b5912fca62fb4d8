"""The parameters' path from submit to the kernel: parsed once at the edge, never parsed again below.

The supervisor runs in this process, so monkeypatching counts what it does; the runner's half is replayed
in a real runner process, from the exact request the supervisor wrote, with the same counters installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import nbformat
import pytest

import nbjobs.execution.job_run as supervisor_module  # the run the supervisor makes per job
import nbjobs.models.parameters as parameters_module
from nbjobs.models.jobs import JobInputs, JobStatus
from nbjobs.models.parameters import parse_parameters

from .conftest import ADMIN

pytestmark = pytest.mark.kernel

# ``python -c``: the runner's main, with every rendering counted and the parser made to fail.
_COUNTING_RUNNER = """
import json, os, sys
import nbjobs.models.parameters as p
renders, real = [], p._render_all
def counting(values):
    renders.append(list(values))
    return real(values)
def no_parsing(*args, **kwargs):
    raise AssertionError("parsed in the runner")
p._render_all, p.parse_parameters = counting, no_parsing
from nbjobs.execution import runner
code = runner.main([])
with open(os.environ["RENDERS_FILE"], "w") as out:
    json.dump(renders, out)
sys.exit(code)
"""


def test_a_run_never_parses_and_renders_each_value_once_on_first_use(make_app, golden, monkeypatch, tmp_path):
    app = make_app(keep_job_dirs=True)  # the replayed runner below needs the job's working directory
    params = parse_parameters({"x": 41})  # the edge: the one parse
    renders: list[list[str]] = []
    real_render = parameters_module._render_all

    def counting(values: Any) -> dict[str, str]:
        renders.append(list(values))
        return real_render(values)

    def no_parsing(*args: object) -> None:
        raise AssertionError("parsed below the edge")

    requests: list[bytes] = []
    real_request = supervisor_module.request_to_json

    def capture(*args: Any) -> bytes:
        requests.append(real_request(*args))
        return requests[-1]

    monkeypatch.setattr(parameters_module, "_render_all", counting)
    monkeypatch.setattr(parameters_module, "parse_parameters", no_parsing)
    monkeypatch.setattr(supervisor_module, "request_to_json", capture)
    inputs = JobInputs(save_injected_parameters=True, notebook_parameters=params)
    job = app.service.submit(ADMIN, golden("trivial.ipynb"), inputs=inputs)
    app.pool.run(burst=True)
    ended = app.store.get(job.job_id)
    assert ended.status == JobStatus.COMPLETED, ended.failure
    output = nbformat.reads(app.store.get_blob(job.job_id, "output").decode(), as_version=4)
    assert "x = 41" in output.cells[1].source and output.cells[2].outputs[0].text == "42\n"
    # submit, the store and the supervisor rendered nothing: the value crossed the store as wire JSON
    assert renders == []

    (raw,) = requests
    request = json.loads(raw)
    assert request["parameters"] == {"values": {"x": 41}}  # no literals: the store carries none
    request["output"] = str(tmp_path / "replayed.ipynb")
    counted = tmp_path / "renders.json"
    replay = subprocess.run(
        [sys.executable, "-c", _COUNTING_RUNNER],
        input=json.dumps(request).encode(),
        capture_output=True,
        cwd=tmp_path,
        env={**request["env"], "RENDERS_FILE": str(counted)},
        timeout=120,
    )
    assert replay.returncode == 0, list(tmp_path.glob("runner-*.log"))[0].read_text()
    done = json.loads(replay.stdout.splitlines()[-1])
    assert done["event"] == "done" and done["failure"] is None, done
    assert json.loads(counted.read_text()) == [["x"]]  # rendered once, for the injected cell; parsed never
