"""Unit tests for nbjobs.models.parameters (parse, render) and nbjobs.execution.parameters (inject)."""

from __future__ import annotations

import ast
import datetime
import math
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nbjobs.errors import InvalidParameters
from nbjobs.execution.parameters import INJECTED_TAG, PARAMETERS_TAG, inject_parameters, remove_injected_cell
from nbjobs.models.parameters import parse_parameters, render_literal


def tagged(source: str, *tags: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["tags"] = list(tags)
    return cell


def run_cell(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(source, "<injected>", "exec"), {"__builtins__": {"float": float}}, namespace)
    return namespace


# --- parse_parameters -------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_parse_parameters_empty(raw: str | None) -> None:
    assert parse_parameters(raw) == {}


def test_parse_parameters_json_object_keeps_order_and_types() -> None:
    params = parse_parameters('{"b": 1, "a": "x", "c": [1, 2.5, null], "d": {"k": true}}')
    assert list(params) == ["b", "a", "c", "d"]
    assert params == {"b": 1, "a": "x", "c": [1, 2.5, None], "d": {"k": True}}


def test_parse_parameters_accepts_a_dict() -> None:
    assert parse_parameters({"x": 1}) == {"x": 1}


def test_parse_parameters_invalid_json() -> None:
    with pytest.raises(InvalidParameters, match="^notebookParameters is not valid JSON: "):
        parse_parameters("{'x': 1}")


def test_parse_parameters_deeply_nested_json_is_invalid_parameters() -> None:
    with pytest.raises(InvalidParameters):
        parse_parameters("[" * 100_000)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("[1, 2]", "array"),
        ("3", "number"),
        ("1.5", "number"),
        ('"x"', "string"),
        ("true", "boolean"),
        ("null", "null"),
    ],
)
def test_parse_parameters_non_object(raw: str, kind: str) -> None:
    with pytest.raises(InvalidParameters, match=f"^notebookParameters must be a JSON object, got {kind}$"):
        parse_parameters(raw)


@pytest.mark.parametrize("key", ["1abc", "has space", "a-b", "class", "None", "", "é-x"])
def test_parse_parameters_bad_keys(key: str) -> None:
    with pytest.raises(InvalidParameters, match="not a valid Python identifier") as info:
        parse_parameters({key: 1})
    assert repr(key) in info.value.message


def test_parse_parameters_non_string_key() -> None:
    with pytest.raises(InvalidParameters):
        parse_parameters({1: "x"})  # type: ignore[dict-item]


def test_parse_parameters_unicode_identifier_is_fine() -> None:
    assert parse_parameters('{"año": 1}') == {"año": 1}


def test_parse_parameters_rejects_unrenderable_values_up_front() -> None:
    with pytest.raises(InvalidParameters, match="^parameter 'when' has unsupported type object$"):
        parse_parameters({"when": object()})
    with pytest.raises(InvalidParameters, match="parameter 'nested'"):
        parse_parameters({"nested": [1, {"k": {1, 2}}]})


# --- render_literal ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        10**30,
        1.5,
        -0.0,
        1e300,
        "",
        "plain",
        "quote ' and \" and \\ and \n\t",
        "unicode ☃ é \u2028",
        [],
        [1, "a", None, [True]],
        {},
        {"a": 1, "b": [1.5, {"c": None}]},
        {1: "int key", "s": 2, None: 3, False: 4, 2.5: 5},
    ],
)
def test_render_literal_round_trips(value: Any) -> None:
    rendered = render_literal(value)
    result = ast.literal_eval(rendered)
    assert result == value
    assert type(result) is type(value)


def test_render_literal_bool_is_not_int() -> None:
    assert render_literal(True) == "True"
    assert render_literal(False) == "False"


def test_render_literal_int_and_str_subclasses_render_as_plain_values() -> None:
    import enum

    class Color(enum.IntEnum):
        RED = 1

    class Name(enum.StrEnum):
        BOB = "bob"

    assert render_literal(Color.RED) == "1"
    assert render_literal(Name.BOB) == "'bob'"


@pytest.mark.parametrize(
    ("value", "source"),
    [(math.nan, "float('nan')"), (math.inf, "float('inf')"), (-math.inf, "float('-inf')")],
)
def test_render_literal_non_finite_floats(value: float, source: str) -> None:
    assert render_literal(value) == source
    result = eval(source, {"__builtins__": {"float": float}})
    assert result == value or (math.isnan(result) and math.isnan(value))


def test_render_literal_tuple_becomes_list() -> None:
    assert ast.literal_eval(render_literal((1, (2, "x")))) == [1, [2, "x"]]


@pytest.mark.parametrize(
    "code",
    [
        "__import__('os').system('x')",
        "'); import os; os.system('x'); ('",
        '"""\nimport os\n"""',
        "x = 1\ny = 2",
        "\\",
    ],
)
def test_render_literal_code_looking_strings_stay_strings(code: str) -> None:
    rendered = render_literal(code)
    tree = ast.parse(rendered, mode="eval")
    assert isinstance(tree.body, ast.Constant)
    assert ast.literal_eval(rendered) == code


def test_render_literal_dates_are_iso_strings() -> None:
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert render_literal(moment) == "'2026-01-02T03:04:05+00:00'"
    assert render_literal(datetime.date(2026, 1, 2)) == "'2026-01-02'"
    assert ast.literal_eval(render_literal({"when": [moment]})) == {"when": ["2026-01-02T03:04:05+00:00"]}


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", 1 + 2j, datetime.time(1, 2)])
def test_render_literal_unsupported_types(value: Any) -> None:
    with pytest.raises(
        InvalidParameters, match=f"^parameter 'p' has unsupported type {type(value).__name__}$"
    ):
        render_literal(value, name="p")


def test_render_literal_unsupported_type_without_name() -> None:
    with pytest.raises(InvalidParameters, match="unsupported type set"):
        render_literal({1})


def test_render_literal_unsupported_dict_key() -> None:
    with pytest.raises(InvalidParameters, match="parameter 'p' has a dict key of unsupported type tuple"):
        render_literal({(1, 2): "x"}, name="p")


# --- inject_parameters ------------------------------------------------------------------------------------


def test_inject_after_parameters_cell() -> None:
    nb = new_notebook(
        cells=[new_markdown_cell("# title"), tagged("x = 0", PARAMETERS_TAG), new_code_cell("x")]
    )
    result, index = inject_parameters(nb, parse_parameters({"x": 5, "name": "it's"}))
    assert index == 2
    assert len(result.cells) == 4
    cell = result.cells[2]
    assert cell.cell_type == "code"
    assert cell.metadata.tags == [INJECTED_TAG]
    assert cell.source == '# Parameters injected by nbjobs\nx = 5\nname = "it\'s"'
    assert run_cell(cell.source) == {"x": 5, "name": "it's"}
    assert result.cells[3].source == "x"
    nbformat.validate(result)


def test_inject_does_not_mutate_input() -> None:
    nb = new_notebook(cells=[tagged("x = 0", PARAMETERS_TAG)])
    before = nbformat.writes(nb)
    result, _ = inject_parameters(nb, parse_parameters({"x": 1}))
    assert nbformat.writes(nb) == before
    assert result is not nb


def test_inject_replaces_existing_injected_cell() -> None:
    old = tagged("# old\nx = 'stale'\nsecret = 1", INJECTED_TAG)
    nb = new_notebook(
        cells=[
            tagged("x = 0", PARAMETERS_TAG),
            new_code_cell("print(x)"),
            old,
            tagged("x = 'second'", INJECTED_TAG),
        ]
    )
    result, index = inject_parameters(nb, parse_parameters({"x": 2}))
    assert index == 2
    assert len(result.cells) == 4
    assert result.cells[2].source == "# Parameters injected by nbjobs\nx = 2"
    assert "stale" not in nbformat.writes(result)
    assert "secret" not in result.cells[2].source
    assert result.cells[3].source == "x = 'second'"  # only the first injected cell is replaced
    nbformat.validate(result)


def test_inject_without_tags_goes_first() -> None:
    nb = new_notebook(cells=[new_code_cell("a"), new_code_cell("b")])
    result, index = inject_parameters(nb, parse_parameters({"y": [1, 2]}), comment="# custom")
    assert index == 0
    assert result.cells[0].source == "# custom\ny = [1, 2]"
    assert [c.source for c in result.cells[1:]] == ["a", "b"]
    nbformat.validate(result)


def test_inject_into_empty_notebook() -> None:
    result, index = inject_parameters(new_notebook(), parse_parameters({"y": 1}))
    assert index == 0
    assert len(result.cells) == 1


def test_only_first_parameters_cell_counts() -> None:
    nb = new_notebook(
        cells=[new_code_cell("a"), tagged("x = 0", PARAMETERS_TAG, "other"), tagged("x = 1", PARAMETERS_TAG)]
    )
    result, index = inject_parameters(nb, parse_parameters({"x": 9}))
    assert index == 2
    assert result.cells[2].metadata.tags == [INJECTED_TAG]
    assert result.cells[3].source == "x = 1"


def test_empty_params_return_unchanged_copy() -> None:
    nb = new_notebook(cells=[tagged("x = 0", PARAMETERS_TAG)])
    result, index = inject_parameters(nb, parse_parameters({}))
    assert index is None
    assert result == nb
    assert result is not nb
    assert result.cells is not nb.cells


def test_injected_cell_round_trips_all_literals() -> None:
    params = parse_parameters(
        '{"s": "__import__(\'os\').system(\'x\')", "n": 1, "f": 2.5, "b": false, "z": null,'
        ' "l": [1, "two", [3]], "d": {"k": {"n": [true]}}, "nan": NaN}'
    )
    result, index = inject_parameters(new_notebook(), params)
    assert index == 0
    namespace = run_cell(result.cells[0].source)
    assert math.isnan(namespace.pop("nan"))
    params = {name: value for name, value in params.items() if name != "nan"}  # a dict to compare with
    assert namespace == params


def test_injected_cell_ids_are_unique_in_v45() -> None:
    nb = new_notebook(cells=[new_code_cell("a") for _ in range(5)])
    result, _ = inject_parameters(nb, parse_parameters({"x": 1}))
    ids = [cell.id for cell in result.cells]
    assert len(set(ids)) == len(ids) == 6
    nbformat.validate(result)


def test_v44_notebook_gets_no_ids() -> None:
    nb = new_notebook(cells=[tagged("x = 0", PARAMETERS_TAG), new_code_cell("x")])
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]
    nbformat.validate(nb)
    result, index = inject_parameters(nb, parse_parameters({"x": 1}))
    assert index == 1
    assert all("id" not in cell for cell in result.cells)
    nbformat.validate(result)


def test_remove_injected_cell() -> None:
    nb = new_notebook(cells=[tagged("x = 0", PARAMETERS_TAG), new_code_cell("x")])
    injected, index = inject_parameters(nb, parse_parameters({"x": 1}))
    removed = remove_injected_cell(injected, index)
    assert removed == nb
    assert len(injected.cells) == 3  # the input is untouched
    nbformat.validate(removed)


def test_remove_injected_cell_none_returns_copy() -> None:
    nb = new_notebook(cells=[new_code_cell("x")])
    result = remove_injected_cell(nb, None)
    assert result == nb
    assert result is not nb


def test_remove_injected_cell_out_of_range() -> None:
    with pytest.raises(IndexError):
        remove_injected_cell(new_notebook(), 0)
