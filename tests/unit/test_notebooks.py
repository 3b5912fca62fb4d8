"""Unit tests for nbjobs.execution.notebook_io."""

from __future__ import annotations

import copy
import json
import logging
import random
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from nbjobs.errors import InvalidNotebook
from nbjobs.execution.notebook_io import (
    ERROR_MARKER_TAG,
    MAX_TRACEBACK_BYTES,
    OutputCap,
    add_error_marker,
    code_cell_indexes,
    kernel_name_of,
    read_notebook,
    write_notebook,
)


def sample_notebook() -> nbformat.NotebookNode:
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Title"),
            new_code_cell(
                "x = 1", outputs=[new_output("stream", name="stdout", text="hi\n")], execution_count=1
            ),
            new_code_cell("1 / 0", execution_count=2),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def sample_dict() -> dict[str, Any]:
    return json.loads(nbformat.writes(sample_notebook()))


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


# --- read_notebook / write_notebook -----------------------------------------------------------------------


def test_read_write_round_trip() -> None:
    nb = sample_notebook()
    data = write_notebook(nb)
    assert isinstance(data, bytes)
    assert read_notebook(data) == nb
    assert read_notebook(data.decode()) == nb


def test_write_is_nbformats_bytes_without_validating_again(caplog: pytest.LogCaptureFixture) -> None:
    """``read_notebook`` validated; writing gives nbformat.writes' bytes but not its second schema pass."""
    nb = sample_notebook()
    assert write_notebook(nb) == nbformat.writes(nb).encode()
    nb.cells[0]["nbjobs-not-a-field"] = 1  # what nbformat.writes would log as invalid (and write anyway)
    with caplog.at_level(logging.ERROR):
        data = write_notebook(nb)
    assert b"nbjobs-not-a-field" in data
    assert not [r for r in caplog.records if "invalid" in r.getMessage()]


def test_read_accepts_utf8_bom() -> None:
    nb = sample_notebook()
    assert read_notebook(b"\xef\xbb\xbf" + write_notebook(nb)) == nb


def test_read_not_utf8() -> None:
    with pytest.raises(InvalidNotebook, match="^the file is not UTF-8 text$"):
        read_notebook(b"\xff\xfe\x00bad")


@pytest.mark.parametrize("data", [b"", b"{", b"not json at all", b"{'nbformat': 4}", "[1, 2"])
def test_read_not_json(data: bytes | str) -> None:
    with pytest.raises(InvalidNotebook, match=r"^the file is not a notebook: not JSON \(.+\)$"):
        read_notebook(data)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 2], "expected a JSON object, got an array"),
        ("text", "expected a JSON object, got a string"),
        (3, "expected a JSON object, got a number"),
        (None, "expected a JSON object, got null"),
        ({}, "missing 'nbformat'"),
        ({"cells": []}, "missing 'nbformat'"),
        ({"nbformat": 4, "nbformat_minor": 5, "metadata": {}}, "missing 'cells'"),
        ({"nbformat": "4", "cells": []}, "'nbformat' is not an integer"),
        ({"nbformat": True, "cells": []}, "'nbformat' is not an integer"),
    ],
)
def test_read_not_a_notebook(value: Any, message: str) -> None:
    with pytest.raises(InvalidNotebook) as info:
        read_notebook(dumps(value))
    assert info.value.message == f"the file is not a notebook: {message}"


@pytest.mark.parametrize("major", [5, 99, 0, -1])
def test_read_unsupported_version(major: int) -> None:
    with pytest.raises(InvalidNotebook, match=f"^unsupported nbformat version {major}$"):
        read_notebook(dumps({**sample_dict(), "nbformat": major}))


def test_read_upgrades_v3() -> None:
    from nbformat import v3

    old = v3.new_notebook(worksheets=[v3.new_worksheet(cells=[v3.new_code_cell(input="1 + 1")])])
    nb = read_notebook(v3.writes_json(old))
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    assert nb.cells[0].source == "1 + 1"
    nbformat.validate(nb)


def test_read_broken_v3() -> None:
    with pytest.raises(InvalidNotebook, match="^could not upgrade the notebook from nbformat 3: "):
        read_notebook(dumps({"nbformat": 3, "worksheets": 5}))


def test_read_invalid_schema_messages() -> None:
    with pytest.raises(InvalidNotebook) as info:
        read_notebook(dumps({**sample_dict(), "cells": 5}))
    assert info.value.message == "the notebook is not valid nbformat 4.5: cells: 5 is not of type 'array'"
    bad = sample_dict()
    bad["cells"][1]["source"] = 3
    with pytest.raises(InvalidNotebook, match="^the notebook is not valid nbformat 4.5: cells/1/source: "):
        read_notebook(dumps(bad))


def test_read_null_cell_type_gets_a_validation_message() -> None:
    bad = sample_dict()
    bad["cells"][1]["cell_type"] = None
    with pytest.raises(InvalidNotebook, match="^the notebook is not valid nbformat 4.5: cells/1: "):
        read_notebook(dumps(bad))


def test_read_validation_message_is_truncated() -> None:
    bad = sample_dict()
    bad["cells"][0]["cell_type"] = "bogus"
    bad["cells"][0]["source"] = "x" * 5000
    with pytest.raises(InvalidNotebook) as info:
        read_notebook(dumps(bad))
    prefix = "the notebook is not valid nbformat 4.5: "
    assert info.value.message.startswith(prefix)
    assert len(info.value.message) <= len(prefix) + 300


def test_read_bad_minor() -> None:
    with pytest.raises(InvalidNotebook, match="'nbformat_minor' is not a valid integer"):
        read_notebook(dumps({**sample_dict(), "nbformat_minor": "5"}))


def test_read_repairs_missing_and_duplicate_ids_without_warning() -> None:
    data = sample_dict()
    del data["cells"][0]["id"]
    data["cells"][2]["id"] = data["cells"][1]["id"]
    nb = read_notebook(dumps(data))
    ids = [cell.id for cell in nb.cells]
    assert len(set(ids)) == 3
    nbformat.validate(nb)


def test_read_v44_notebook_without_ids() -> None:
    data = sample_dict()
    data["nbformat_minor"] = 4
    for cell in data["cells"]:
        del cell["id"]
    nb = read_notebook(dumps(data))
    assert nb.nbformat_minor == 4
    assert all("id" not in cell for cell in nb.cells)


def _fuzz_inputs() -> list[bytes]:
    rng = random.Random(1234)
    valid = write_notebook(sample_notebook())
    inputs = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))) for _ in range(200)]
    inputs += [valid[:cut] for cut in range(0, len(valid), 7)]
    inputs += [b"[" * 50_000, b'{"a":' * 50_000]
    tokens = [b"{", b"}", b"[", b"]", b",", b":", b'"nbformat"', b'"cells"', b"4", b"null", b'"x"', b"true"]
    inputs += [b"".join(rng.choice(tokens) for _ in range(rng.randint(1, 30))) for _ in range(300)]
    base = sample_dict()
    mutations: list[tuple[tuple[Any, ...], Any]] = [
        (("cells",), 5),
        (("cells",), "abc"),
        (("cells",), [1]),
        (("cells",), [None]),
        (("cells",), {}),
        (("metadata",), None),
        (("metadata",), []),
        (("metadata", "kernelspec"), 7),
        (("nbformat_minor",), None),
        (("nbformat_minor",), -1),
        (("nbformat_minor",), 99),
        (("nbformat_minor",), 4.5),
        (("nbformat",), 4.0),
        (("nbformat",), None),
        (("nbformat",), [4]),
        (("cells", 1, "source"), 3),
        (("cells", 1, "source"), [1, 2]),
        (("cells", 1, "outputs"), "x"),
        (("cells", 1, "outputs", 0), 1),
        (("cells", 1, "outputs", 0, "output_type"), 9),
        (("cells", 1, "outputs", 0, "text"), {"a": 1}),
        (("cells", 1, "cell_type"), None),
        (("cells", 1, "id"), 5),
        (("cells", 1, "id"), [1]),
        (("cells", 1, "id"), {"x": 1}),
        (("cells", 1, "id"), ""),
        (("cells", 1, "metadata"), "m"),
        (("cells", 1, "metadata", "tags"), "t"),
        (("cells", 0), []),
        (("cells", 1, "execution_count"), "1"),
    ]
    for path, value in mutations:
        mutated = copy.deepcopy(base)
        target = mutated
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        inputs.append(dumps(mutated))
    for key in ("cells", "metadata", "nbformat_minor"):
        inputs.append(dumps({k: v for k, v in base.items() if k != key}))
    return inputs


def test_read_fuzz_only_raises_invalid_notebook() -> None:
    for data in _fuzz_inputs():
        try:
            nb = read_notebook(data)
        except InvalidNotebook as exc:
            assert exc.message
        else:
            nbformat.validate(nb)


# --- small helpers ----------------------------------------------------------------------------------------


def test_kernel_name_of() -> None:
    assert kernel_name_of(sample_notebook(), "fallback") == "python3"
    assert kernel_name_of(new_notebook(), "fallback") == "fallback"
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "x"}
    assert kernel_name_of(nb, "fallback") == "fallback"


def test_code_cell_indexes() -> None:
    assert code_cell_indexes(sample_notebook()) == [1, 2]
    assert code_cell_indexes(new_notebook()) == []


# --- add_error_marker -------------------------------------------------------------------------------------


def test_add_error_marker() -> None:
    nb = sample_notebook()
    marked = add_error_marker(nb, 2, execution_count=7)
    assert len(marked.cells) == 5
    banner, anchor = marked.cells[0], marked.cells[3]
    assert banner.cell_type == anchor.cell_type == "markdown"
    assert banner.metadata.tags == anchor.metadata.tags == [ERROR_MARKER_TAG]
    assert banner.source == (
        '<span style="color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;">'
        "An Exception was encountered at '<a href=\"#nbjobs-error-cell\">In [7]</a>'.</span>"
    )
    assert anchor.source == '<span id="nbjobs-error-cell"></span>'
    assert marked.cells[4].source == "1 / 0"
    assert len(nb.cells) == 3  # the input is untouched
    assert len({cell.id for cell in marked.cells}) == 5
    nbformat.validate(marked)


def test_add_error_marker_without_execution_count() -> None:
    marked = add_error_marker(sample_notebook(), 0, execution_count=None)
    assert "In [1]" in marked.cells[0].source
    assert marked.cells[1].source == '<span id="nbjobs-error-cell"></span>'
    assert marked.cells[2].source == "# Title"


def test_add_error_marker_v44() -> None:
    nb = sample_notebook()
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]
    marked = add_error_marker(nb, 1, execution_count=1)
    assert all("id" not in cell for cell in marked.cells)
    nbformat.validate(marked)


def test_add_error_marker_out_of_range() -> None:
    with pytest.raises(IndexError):
        add_error_marker(sample_notebook(), 3, execution_count=None)


# --- OutputCap --------------------------------------------------------------------------------------------


def stream(text: str, name: str = "stdout") -> nbformat.NotebookNode:
    return new_output("stream", name=name, text=text)


def display(text: str) -> nbformat.NotebookNode:
    return new_output("display_data", data={"text/plain": text, "application/json": {"k": text}})


def test_cap_admits_outputs_within_budget() -> None:
    cap = OutputCap(100, 1000)
    out = stream("a" * 40)
    assert cap.admit(0, out) is out
    assert cap.admit(0, stream("b" * 60)) is not None
    assert cap.total_bytes == 100
    assert not cap.truncated
    assert cap.truncated_cells == []


def test_cap_truncates_stream_once_per_cell_then_drops() -> None:
    cap = OutputCap(100, 1000)
    cap.admit(0, stream("a" * 60))
    out = stream("b" * 60, name="stderr")
    cut = cap.admit(0, out)
    assert cut is not None
    assert cut["name"] == "stderr"
    assert (
        cut["text"] == "b" * 40 + "\n[nbjobs] output truncated: this cell exceeded the limit of 100 bytes\n"
    )
    assert out["text"] == "b" * 60  # the original is not modified
    assert cap.admit(0, stream("c")) is None
    assert cap.admit(0, display("d")) is None
    assert cap.truncated
    assert cap.truncated_cells == [0]
    assert cap.total_bytes == 100
    assert cap.admit(1, stream("other cell")) is not None  # other cells keep their own budget


def test_cap_stream_text_as_list() -> None:
    cap = OutputCap(5, 1000)
    cut = cap.admit(0, {"output_type": "stream", "name": "stdout", "text": ["abc", "defgh"]})
    assert cut is not None
    assert cut["text"].startswith("abcde\n[nbjobs] output truncated")


def test_cap_replaces_oversized_data_bundle_with_stderr_notice() -> None:
    cap = OutputCap(10, 1000)
    cut = cap.admit(2, display("x" * 50))
    assert cut == new_output(
        "stream",
        name="stderr",
        text="\n[nbjobs] output truncated: this cell exceeded the limit of 10 bytes\n",
    )
    nbformat.validate(cut, ref="stream", version=4, version_minor=5)
    assert cap.admit(2, display("y")) is None
    assert cap.truncated_cells == [2]


def test_cap_measures_data_bundles() -> None:
    cap = OutputCap(1000, 1000)
    cap.admit(0, display("abc"))  # 3 for text/plain + len('{"k": "abc"}') == 12
    assert cap.total_bytes == 15
    result = new_output("execute_result", data={"text/plain": "12345"}, execution_count=1)
    assert cap.admit(0, result) is result
    assert cap.total_bytes == 20


def test_cap_notebook_budget_spans_cells() -> None:
    cap = OutputCap(100, 150)
    assert cap.admit(0, stream("a" * 100)) is not None
    cut = cap.admit(1, stream("b" * 80))
    assert cut is not None
    assert (
        cut["text"]
        == "b" * 50 + "\n[nbjobs] output truncated: the notebook exceeded the limit of 150 bytes\n"
    )
    assert cap.admit(1, stream("more")) is None
    assert cap.admit(2, stream("new cell")) is None
    assert cap.admit(0, display("z")) is None
    assert cap.total_bytes == 150
    assert cap.truncated_cells == [1, 2, 0]


def test_cap_exact_fill_then_next_output_truncates() -> None:
    cap = OutputCap(10, 100)
    assert cap.admit(0, stream("a" * 10)) is not None
    cut = cap.admit(0, stream("b"))
    assert cut is not None and cut["text"].startswith("\n[nbjobs] output truncated")
    assert cap.admit(0, stream("c")) is None


def test_cap_always_admits_errors() -> None:
    cap = OutputCap(10, 10)
    cap.admit(0, stream("a" * 20))
    assert cap.admit(0, stream("b")) is None
    error = new_output(
        "error", ename="ZeroDivisionError", evalue="division by zero", traceback=["line 1", "line 2"]
    )
    assert cap.admit(0, error) is error
    assert cap.admit(5, error) is error


def test_cap_truncates_huge_tracebacks() -> None:
    cap = OutputCap(10, 10)
    lines = ["x" * 1000] * 200
    error = new_output("error", ename="E", evalue="v" * 100_000, traceback=lines)
    capped = cap.admit(0, error)
    assert capped is not None and capped is not error
    assert sum(len(line) for line in capped["traceback"][:-1]) == MAX_TRACEBACK_BYTES
    assert capped["traceback"][-1] == "[nbjobs] traceback truncated"
    assert len(capped["evalue"]) == MAX_TRACEBACK_BYTES
    assert len(error["traceback"]) == 200  # the original is not modified
    nbformat.validate(capped, ref="error", version=4, version_minor=5)


def test_cap_results_keep_the_notebook_valid() -> None:
    cap = OutputCap(20, 1000)
    outputs = [cap.admit(0, out) for out in (stream("a" * 15), display("b" * 15), stream("c"))]
    cell = new_code_cell("x", outputs=[out for out in outputs if out is not None])
    nb = new_notebook(cells=[cell])
    nbformat.validate(nb)
    assert len(cell.outputs) == 2


def test_cap_rejects_negative_limits() -> None:
    with pytest.raises(ValueError):
        OutputCap(-1, 10)
