"""NotebookParameters: one typed value, parsed and rendered once, carried unchanged to the injected cell."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from nbformat.v4 import new_code_cell, new_notebook

import nbjobs.execution
import nbjobs.models.parameters as parameters_module
from nbjobs.errors import InvalidParameters
from nbjobs.execution.engine import ExecutionRequest
from nbjobs.execution.parameters import inject_parameters
from nbjobs.execution.runner import request_from_json, request_to_json
from nbjobs.models.jobs import JobInputs
from nbjobs.models.parameters import NotebookParameters, parse_parameters
from nbjobs.service.jobs.service import check_parameter_limits

RAW = '{"name": "it\'s", "count": 3, "ratio": 0.5, "items": [1, "two", null], "config": {"k": true}}'
PARSED = parse_parameters(RAW)  # parsed before any test disables the renderer


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every rendering of a whole value, as the list of names it rendered."""
    calls: list[list[str]] = []
    real = parameters_module._render_all

    def counting(values: Any) -> dict[str, str]:
        calls.append(list(values))
        return real(values)

    monkeypatch.setattr(parameters_module, "_render_all", counting)
    return calls


@pytest.fixture
def no_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> str:
        raise AssertionError("rendered again")

    monkeypatch.setattr(parameters_module, "_render_all", refuse)
    monkeypatch.setattr(parameters_module, "render_literal", refuse)


def test_parsing_renders_every_value_exactly_once(renders: list[list[str]]) -> None:
    params = parse_parameters(RAW)
    assert renders == [["name", "count", "ratio", "items", "config"]]
    assert params.rendered and isinstance(params, NotebookParameters)
    assert dict(params.literals) == {
        "name": '"it\'s"',
        "count": "3",
        "ratio": "0.5",
        "items": "[1, 'two', None]",
        "config": "{'k': True}",
    }
    params.literals  # noqa: B018 - using the literals again renders nothing
    assert len(renders) == 1


def test_it_is_a_read_only_mapping_equal_to_a_dict_of_the_same_items() -> None:
    params = parse_parameters(RAW)
    assert params == json.loads(RAW) and json.loads(RAW) == params
    assert params == parse_parameters(json.loads(RAW)) == NotebookParameters.trusted(json.loads(RAW))
    assert params != {"name": "it's"} and NotebookParameters() == {} and not NotebookParameters()
    assert list(params) == ["name", "count", "ratio", "items", "config"] and params["count"] == 3
    with pytest.raises(TypeError):
        params["count"] = 4  # type: ignore[index]
    with pytest.raises(AttributeError, match="immutable"):
        params._values = {}  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del params._literals
    with pytest.raises(TypeError):
        params.literals["count"] = "4"  # type: ignore[index]
    wire = params.to_wire()
    wire["count"] = 4
    assert params["count"] == 3  # to_wire hands out a copy
    with pytest.raises(TypeError):
        hash(params)


def test_the_byte_size_is_the_compact_json_the_limit_counted_before() -> None:
    params = parse_parameters('{"name": "é", "n": NaN, "l": [1, 2]}')
    before = len(json.dumps(dict(params), ensure_ascii=False, separators=(",", ":"), default=str).encode())
    assert params.json_size == before == len('{"name":"é","n":NaN,"l":[1,2]}'.encode())
    check_parameter_limits(params, max_count=3, max_bytes=before)
    with pytest.raises(InvalidParameters, match="has 3 parameters; this server accepts at most 2"):
        check_parameter_limits(params, max_count=2, max_bytes=0)


def test_job_inputs_round_trip_the_same_wire_object_without_rendering(renders: list[list[str]]) -> None:
    params = parse_parameters(RAW)
    inputs = JobInputs(item_id="i", notebook_parameters=params)
    wire = inputs.to_wire()
    assert wire["notebookParameters"] == json.loads(RAW) and type(wire["notebookParameters"]) is dict
    stored = json.loads(json.dumps(wire))  # what a JSON column gives back
    back = JobInputs.from_wire(stored)
    assert back == inputs and back.to_wire() == wire
    assert len(renders) == 1  # the parse; reading the job back checked and rendered nothing
    assert not back.notebook_parameters.rendered
    assert dict(back.notebook_parameters.literals) == dict(params.literals)  # rendered on first use, once
    back.notebook_parameters.literals  # noqa: B018
    assert len(renders) == 2


def test_a_hand_edited_row_reads_back_and_fails_only_when_used() -> None:
    inputs = JobInputs.from_wire({"notebookParameters": [1, 2]})
    assert inputs.to_wire()["notebookParameters"] == [1, 2]
    with pytest.raises(InvalidParameters, match="^notebookParameters must be a JSON object, got array$"):
        inputs.notebook_parameters.literals  # noqa: B018
    with pytest.raises(InvalidParameters, match="^notebookParameters must be a JSON object, got array$"):
        inject_parameters(new_notebook(), inputs.notebook_parameters)
    bad_name = JobInputs.from_wire({"notebookParameters": {"x; import os": 1}}).notebook_parameters
    with pytest.raises(InvalidParameters, match="is not a valid Python identifier"):
        bad_name.literals  # noqa: B018


def test_the_runner_request_carries_the_value_and_its_literals(tmp_path: Path, no_rendering: None) -> None:
    request = ExecutionRequest(notebook=b"{}", parameters=PARSED, output_names=("a", "b"))
    back, output = request_from_json(request_to_json(request, tmp_path / "out.ipynb"))
    assert back == request and output == tmp_path / "out.ipynb"
    assert back.parameters.rendered and back.parameters == request.parameters
    assert dict(back.parameters.literals) == dict(request.parameters.literals)
    nb, index = inject_parameters(new_notebook(cells=[new_code_cell("x")]), back.parameters)
    assert index == 0 and nb.cells[0].source.splitlines()[1:] == [
        'name = "it\'s"',
        "count = 3",
        "ratio = 0.5",
        "items = [1, 'two', None]",
        "config = {'k': True}",
    ]


def test_injection_pastes_the_carried_literals_as_they_are(no_rendering: None) -> None:
    carried = NotebookParameters.from_json({"values": {"x": 1}, "literals": {"x": "1  # as rendered"}})
    nb, _ = inject_parameters(new_notebook(), carried)
    assert nb.cells[0].source == "# Parameters injected by nbjobs\nx = 1  # as rendered"


def test_a_stored_value_reaches_the_runner_unrendered_and_is_rendered_there_once(
    tmp_path: Path, renders: list[list[str]]
) -> None:
    stored = JobInputs.from_wire({"notebookParameters": json.loads(RAW)}).notebook_parameters
    raw = request_to_json(ExecutionRequest(notebook=b"{}", parameters=stored), tmp_path / "o")
    assert "literals" not in json.loads(raw)["parameters"] and renders == []  # the supervisor renders nothing
    runner_side, _ = request_from_json(raw)
    inject_parameters(new_notebook(), runner_side.parameters)
    inject_parameters(new_notebook(), runner_side.parameters)
    assert renders == [["name", "count", "ratio", "items", "config"]]


def test_merged_keeps_order_later_values_win_and_literals_when_both_have_them() -> None:
    first = parse_parameters({"a": 1, "b": 2})
    both = first.merged(parse_parameters({"b": "two", "c": None}))
    assert list(both) == ["a", "b", "c"] and both == {"a": 1, "b": "two", "c": None}
    assert both.rendered and dict(both.literals) == {"a": "1", "b": "'two'", "c": "None"}
    lazy = NotebookParameters.trusted({"a": 1}).merged(parse_parameters({"b": 2}))
    assert lazy == {"a": 1, "b": 2} and not lazy.rendered
    assert first.merged(NotebookParameters()) is first and NotebookParameters().merged(first) is first
    with pytest.raises(InvalidParameters, match="got array"):
        NotebookParameters.trusted([1]).merged(first)


def test_copies_and_pickles_are_equal_and_keep_the_literals(no_rendering: None) -> None:
    params = PARSED
    for other in (copy.copy(params), copy.deepcopy(params), pickle.loads(pickle.dumps(params))):
        assert other == params and other.rendered and dict(other.literals) == dict(params.literals)


def test_the_execution_layer_has_no_parser() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(nbjobs.execution.__path__):
        module = importlib.import_module(f"nbjobs.execution.{info.name}")
        assert "parse_parameters" not in vars(module), info.name
        assert "render_literal" not in vars(module), info.name
