"""Web tool parameters (declaration, inference, analysis), value conversion and the GP view of a job."""

from __future__ import annotations

import json

import pytest

from nbjobs.errors import InvalidRequest
from nbjobs.models.jobs import Failure, FailureReason, Job, JobInputs, JobStatus, JobType
from nbjobs.models.runtimes import Runtime
from nbjobs.service.webtools.outcome import outcome
from nbjobs.service.webtools.params import INPUT, OUTPUT, ParamType, ToolParam, ToolParams, analyze, register
from nbjobs.service.webtools.values import InvalidValue, convert_input, typed_output
from tests.conftest import notebook_bytes

# -- declarations ------------------------------------------------------------------------------------


def test_types_parse_from_metadata_names_aliases_and_gp_names():
    assert ParamType.parse("Record set") is ParamType.RECORD_SET
    assert ParamType.parse("feature_set") is ParamType.FEATURE_SET
    assert ParamType.parse("GPLong") is ParamType.LONG
    assert ParamType.parse("GPFeatureRecordSetLayer") is ParamType.FEATURE_SET
    assert ParamType.parse("data file") is ParamType.FILE
    assert [t.gp for t in ParamType] == [
        "GPString",
        "GPLong",
        "GPDouble",
        "GPBoolean",
        "GPDate",
        "GPRecordSet",
        "GPFeatureRecordSetLayer",
        "GPDataFile",
    ]
    with pytest.raises(InvalidRequest, match="Unknown web tool parameter type 'Raster'"):
        ParamType.parse("Raster")


def test_the_golden_notebook_declares_every_type():
    analysis = analyze(notebook_bytes("webtool.ipynb"))
    assert analysis.errors == [] and analysis.warnings == []
    params = analysis.params
    assert [(p.name, p.type.value) for p in params.inputs][:3] == [
        ("radius", "Double"),
        ("name", "String"),
        ("count", "Long"),
    ]
    radius = params.input("radius")
    assert radius is not None and radius.default == 1.0 and radius.display_name == "Radius"
    assert params.input("rows").default == {"features": []}
    assert [p.direction for p in params.outputs] == [OUTPUT] * 8


def test_register_infers_types_from_the_parameters_cell_and_keeps_earlier_entries():
    data, analysis = register(
        notebook_bytes("parameters.ipynb"), ["name", "count", "ratio", "flag"], ["result:String"]
    )
    assert [(p.name, p.type) for p in analysis.params.inputs] == [
        ("name", ParamType.STRING),
        ("count", ParamType.LONG),
        ("ratio", ParamType.DOUBLE),
        ("flag", ParamType.BOOLEAN),
    ]
    again, analysis = register(data, ["count:Double:required"], [])
    count = analysis.params.input("count")
    assert count is not None and count.type is ParamType.DOUBLE and count.required
    assert len(analysis.params.inputs) == 4 and analysis.params.output("result") is not None
    stored = json.loads(again)["metadata"]["nbjobs"]["webtool"]
    assert stored["outputs"] == [{"name": "result", "type": "String"}]


def test_an_input_whose_type_cannot_be_inferred_is_an_error():
    _, analysis = register(notebook_bytes("parameters.ipynb"), ["items", "when"], [])
    assert analysis.errors == [
        "Webtool input parameter 'items' has no type and none can be inferred from its value.",
        "Webtool input parameter 'when' has no type and none can be inferred from its value.",
    ]


@pytest.mark.parametrize("spec", ["", "a:Long:optional", "a:b:c:d", ":Long"])
def test_bad_cli_specs_are_refused(spec):
    with pytest.raises(InvalidRequest):
        register(notebook_bytes("parameters.ipynb"), [spec], [])


def test_an_output_cannot_be_required():
    with pytest.raises(InvalidRequest, match="only inputs can be required"):
        register(notebook_bytes("parameters.ipynb"), [], ["result:String:required"])


def test_analysis_warns_in_the_arcgis_words_and_rejects_bad_names():
    nb = json.loads(notebook_bytes("webtool.ipynb"))
    section = nb["metadata"]["nbjobs"]["webtool"]
    section["inputs"] += [
        {"name": "I2", "type": "String"},
        {"name": "class", "type": "String"},
        {"name": "radius", "type": "Double"},
    ]
    section["outputs"] += [{"name": "nowhere", "type": "Long"}, "junk"]
    analysis = analyze(json.dumps(nb).encode())
    assert analysis.warnings == [
        "Unable to find webtool input parameter 'I2' in the Notebook.",
        "Invalid webtool output parameter 'nowhere': the notebook never assigns it.",
    ]
    assert analysis.errors == [
        "Invalid webtool input parameter name 'class': use a Python variable name.",
        "Webtool parameter 'radius' is registered twice.",
        "Invalid webtool output parameter 'junk': expected an object with a name.",
    ]
    assert analysis.to_wire()["status"] == "success"


def test_cells_with_magics_still_count_their_assignments():
    nb = json.loads(notebook_bytes("webtool_trivial.ipynb"))
    nb["cells"][1]["source"] = "%time z = 1\n!ls\ny = x + 1"
    assert analyze(json.dumps(nb).encode()).warnings == []


def test_a_file_that_is_not_a_notebook_is_an_analysis_error():
    assert analyze(b"not json").errors[0].startswith("the file is not a notebook")


def test_tool_params_round_trip_through_their_stored_form():
    params = analyze(notebook_bytes("webtool.ipynb")).params
    assert ToolParams.from_json(json.loads(json.dumps(params.to_json()))) == params


# -- input values ------------------------------------------------------------------------------------


def _param(kind: ParamType) -> ToolParam:
    return ToolParam("p", kind, INPUT)


@pytest.mark.parametrize(
    ("kind", "raw", "value"),
    [
        (ParamType.STRING, "hello", "hello"),
        (ParamType.STRING, "{not json", "{not json"),
        (ParamType.LONG, "42", 42),
        (ParamType.LONG, "1e3", 1000),
        (ParamType.LONG, '{"value": 7}', 7),
        (ParamType.DOUBLE, "2.5", 2.5),
        (ParamType.DOUBLE, 3, 3.0),
        (ParamType.BOOLEAN, "TRUE", True),
        (ParamType.BOOLEAN, "0", False),
        (ParamType.DATE, "86400000", "1970-01-02T00:00:00Z"),
        (ParamType.DATE, "2026-03-01T12:00:00+02:00", "2026-03-01T10:00:00Z"),
        (ParamType.DATE, "2026-03-01", "2026-03-01T00:00:00Z"),
        (
            ParamType.RECORD_SET,
            '{"features": [{"attributes": {"a": 1}}]}',
            {"features": [{"attributes": {"a": 1}}]},
        ),
        (ParamType.FEATURE_SET, '{"url": "https://h/FeatureServer/0"}', {"url": "https://h/FeatureServer/0"}),
        (ParamType.FILE, "https://h/a.csv", {"url": "https://h/a.csv"}),
        (ParamType.FILE, '{"itemID": "abc"}', {"itemID": "abc"}),
    ],
)
def test_inputs_are_converted_by_type(kind, raw, value):
    assert convert_input(_param(kind), raw) == value


@pytest.mark.parametrize(
    ("kind", "raw", "why"),
    [
        (ParamType.LONG, "abc", "'abc' is not an integer"),
        (ParamType.LONG, "2.5", "'2.5' is not an integer"),
        (ParamType.LONG, True, "expected an integer, got a boolean"),
        (ParamType.DOUBLE, "nan", "is not a finite number"),
        (ParamType.BOOLEAN, "yes please", "is not true or false"),
        (ParamType.DATE, "soon", "is not epoch milliseconds or an ISO 8601 date"),
        (ParamType.RECORD_SET, '{"rows": []}', '"features" list'),
        (ParamType.RECORD_SET, '{"features": [1]}', "feature 0 is not a JSON object"),
        (
            ParamType.FEATURE_SET,
            '{"features": [{"attributes": 3}]}',
            '"attributes" that are not a JSON object',
        ),
        (ParamType.FILE, '{"name": "x"}', 'expected {"url": …}'),
    ],
)
def test_bad_inputs_name_the_parameter_and_the_reason(kind, raw, why):
    with pytest.raises(InvalidValue) as caught:
        convert_input(_param(kind), raw)
    assert caught.value.message.startswith(f"Invalid value for parameter 'p' ({kind.value}): ")
    assert why in caught.value.message


# -- output values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "gp"),
    [
        (ParamType.LONG, 3.0, 3),
        (ParamType.DOUBLE, 2, 2.0),
        (ParamType.DATE, "2026-11-28", 1795824000000),
        (ParamType.DATE, "2026-11-28T01:00:00+01:00", 1795824000000),
        (ParamType.RECORD_SET, [{"a": 1}], {"features": [{"attributes": {"a": 1}}]}),
        (ParamType.FEATURE_SET, '{"features": []}', {"features": []}),
        (ParamType.FILE, "https://h/x.csv", {"url": "https://h/x.csv"}),
        (ParamType.STRING, None, None),
    ],
)
def test_outputs_are_typed(kind, value, gp):
    assert typed_output(ToolParam("o", kind, OUTPUT), value) == gp


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (ParamType.LONG, 2.5),
        (ParamType.LONG, True),
        (ParamType.STRING, 3),
        (ParamType.BOOLEAN, 1),
        (ParamType.RECORD_SET, {"a": 1}),
        (ParamType.DATE, [1]),
    ],
)
def test_outputs_of_the_wrong_type_say_so(kind, value):
    with pytest.raises(ValueError, match=f"output 'o' \\({kind.value}\\): expected"):
        typed_output(ToolParam("o", kind, OUTPUT), value)


# -- the GP view of a job ----------------------------------------------------------------------------

PARAMS = ToolParams(outputs=(ToolParam("area", ParamType.DOUBLE, OUTPUT),))


def _job(status: JobStatus, **fields: object) -> Job:
    base = dict(
        job_id="j" + "0" * 32,
        type=JobType.EXECUTE_NOTEBOOK_AS_WEB_TOOL,
        username="alice",
        status=status,
        inputs=JobInputs(),
        runtime=Runtime("r", "R", "1"),
        date_created=1000,
        revision=1000,
    )
    return Job(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "word"),
    [
        (JobStatus.SUBMITTED, "esriJobSubmitted"),
        (JobStatus.EXECUTING, "esriJobExecuting"),
        (JobStatus.CANCELLING, "esriJobCancelling"),
        (JobStatus.CANCELLED, "esriJobCancelled"),
    ],
)
def test_statuses_map_to_the_gp_words(status, word):
    assert outcome(_job(status), PARAMS, "T").status == word


def test_success_types_the_results_and_reports_the_elapsed_time():
    job = _job(
        JobStatus.COMPLETED, start_time=1000, end_time=1250, results={"outputValues": {"area": {"value": 2}}}
    )
    out = outcome(job, PARAMS, "T")
    assert out.status == "esriJobSucceeded" and out.results == {"area": 2.0}
    assert out.messages[-1]["description"].endswith("(Elapsed Time: 0.25 seconds)")


def test_a_completed_run_missing_an_output_is_a_failed_gp_job():
    job = _job(
        JobStatus.COMPLETED,
        results={"outputValues": {"area": {"error": "NameError: name 'area' is not defined"}}},
    )
    out = outcome(job, PARAMS, "T")
    assert out.status == "esriJobFailed" and out.results == {}
    assert out.errors == [
        "Output parameter 'area' was not set by the notebook (NameError: name 'area' is not defined).",
        "Failed to execute (T).",
    ]


def test_a_timeout_is_timed_out_and_a_cell_error_carries_its_cell_and_clean_traceback():
    timed = _job(
        JobStatus.FAILED, failure=Failure(FailureReason.TIMEOUT, "The job ran longer than 1 minutes")
    )
    assert outcome(timed, PARAMS, "T").status == "esriJobTimedOut"
    failure = Failure(
        FailureReason.CELL_ERROR,
        "ValueError: boom",
        cell_index=2,
        ename="ValueError",
        evalue="boom",
        traceback=("\x1b[31mTraceback\x1b[0m", "ValueError: boom"),
    )
    out = outcome(_job(JobStatus.FAILED, failure=failure, start_time=5), PARAMS, "T")
    assert out.status == "esriJobFailed"
    assert out.errors == [
        "ValueError: boom (cell 2)",
        "Traceback\nValueError: boom",
        "Failed to execute (T).",
    ]


# -- the command line --------------------------------------------------------------------------------


def test_cli_params_registers_and_reports(tmp_path):
    from click.testing import CliRunner

    from nbjobs.cli import main

    path = tmp_path / "p.ipynb"
    path.write_bytes(notebook_bytes("parameters.ipynb"))
    runner = CliRunner()
    done = runner.invoke(
        main,
        ["webtools", "params", str(path), "-i", "name", "-i", "count:Long:required", "-o", "result:Double"],
    )
    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == [
        "input   name: String = 'nobody'",
        "input   count: Long (required) = 0",
        "output  result: Double",
    ]
    assert json.loads(path.read_bytes())["metadata"]["nbjobs"]["webtool"]["inputs"][1]["required"] is True
    bad = runner.invoke(main, ["webtools", "params", str(path), "-i", "x:Raster"])
    assert bad.exit_code == 1 and "Unknown web tool parameter type 'Raster'" in bad.output
    check = runner.invoke(main, ["webtools", "params", str(path), "--check"])
    assert check.exit_code == 0 and "output  result: Double" in check.output
