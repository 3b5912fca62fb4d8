"""papermill's rules without a kernel: -p typing, YAML parameters, clearing a notebook before its run.

papermill itself is the oracle where it has a function for the rule (it is a test dependency).
"""

from __future__ import annotations

import base64
import math

import pytest
import yaml
from papermill.cli import _resolve_type as papermill_resolve_type
from papermill.execute import remove_error_markers as papermill_remove_error_markers
from papermill.iorw import NoDatesSafeLoader

from nbjobs.cli.papermill_params import load_yaml, resolve_type
from nbjobs.errors import InvalidNotebook
from nbjobs.execution.kernels import resolve_kernel_name
from nbjobs.execution.notebook_io import hide_inputs, prepare_for_run, read_notebook, unnamed_kernelspec

from ..conftest import notebook_bytes

VALUES = ["True", "true", "False", "false", "None", "null", "none", "42", "-3", " 7 ", "1_000", "0x10", "2.5",
          "1e3", "nan", "-inf", "Infinity", "hello", "", "TRUE", "1.2.3", "[1, 2]", "{}", "0",
          "٣"]  # fmt: skip


@pytest.mark.parametrize("value", VALUES)
def test_p_values_are_typed_exactly_as_papermill_types_them(value: str) -> None:
    mine, theirs = resolve_type(value), papermill_resolve_type(value)
    assert type(mine) is type(theirs)
    assert mine == theirs or (isinstance(mine, float) and math.isnan(mine) and math.isnan(theirs))


def test_lowercase_true_false_null_stay_strings() -> None:
    assert [resolve_type(v) for v in ("true", "false", "null")] == ["true", "false", "null"]


DOCUMENTS = ["a: 1\nb: [1, {x: null}]", "when: 2026-01-02\nat: 2026-01-02T03:04:05Z", "x: 1e3\ny: 1.0e+3",
             "on: yes\noff: no", '{"json": [1, 2.5, "s", null, true]}', "", "# only a comment"]  # fmt: skip


@pytest.mark.parametrize("document", DOCUMENTS)
def test_yaml_parameters_load_as_papermill_loads_them(document: str) -> None:
    assert load_yaml(document, "-y") == (yaml.load(document, Loader=NoDatesSafeLoader) or {})


def test_yaml_that_is_not_a_mapping_is_refused_naming_its_source() -> None:
    with pytest.raises(
        ValueError, match=r"p\.yaml: parameters must be a JSON object \(a YAML mapping\), got a list"
    ):
        load_yaml("[1, 2]", "p.yaml")
    with pytest.raises(ValueError, match="-y is not valid YAML"):
        load_yaml("a: [1,", "-y")
    assert load_yaml(base64.b64decode(base64.b64encode(b"k: v")), "-b") == {"k": "v"}


def test_prepare_for_run_clears_every_output_and_count_and_keeps_the_sources() -> None:
    nb = read_notebook(notebook_bytes("stale_outputs.ipynb"))
    sources = [c.source for c in nb.cells]
    assert any(c.outputs for c in nb.cells)  # the golden notebook does carry stale outputs
    prepared = prepare_for_run(nb)
    assert [c.source for c in prepared.cells] == sources
    assert all(c.outputs == [] and c.execution_count is None for c in prepared.cells)


def test_prepare_for_run_removes_papermill_and_nbjobs_markers_like_papermill_does_its_own() -> None:
    nb = read_notebook(notebook_bytes("stale_error_markers.ipynb"))
    theirs = papermill_remove_error_markers(read_notebook(notebook_bytes("stale_error_markers.ipynb")))
    mine = prepare_for_run(nb)
    assert [c.source for c in mine.cells] == [
        "print('one')",
        "print('two')",
        "print('three')",
        theirs.cells[-1].source,
    ]
    assert len(theirs.cells) == len(mine.cells) + 1  # papermill keeps the nbjobs marker; nbjobs drops both


def test_a_kernelspec_without_name_is_read_and_flagged_not_refused() -> None:
    nb = read_notebook(notebook_bytes("kernelspec_without_name.ipynb"))
    assert unnamed_kernelspec(nb)
    assert not unnamed_kernelspec(read_notebook(notebook_bytes("trivial.ipynb")))
    assert not unnamed_kernelspec(read_notebook(notebook_bytes("no_kernelspec.ipynb")))


def test_a_kernelspec_without_name_and_without_display_name_is_still_invalid() -> None:
    raw = notebook_bytes("kernelspec_without_name.ipynb").replace(b'"display_name"', b'"shown_name"')
    with pytest.raises(InvalidNotebook, match="display_name"):
        read_notebook(raw)


def test_kernel_name_python_means_python3_as_in_jupyter_client() -> None:
    from jupyter_client.manager import KernelManager

    assert resolve_kernel_name("python") == KernelManager(kernel_name="python").kernel_name == "python3"
    assert resolve_kernel_name("ir") == "ir"


def test_report_mode_hides_code_inputs_only() -> None:
    nb = read_notebook(notebook_bytes("stale_error_markers.ipynb"))
    hide_inputs(nb)
    assert [c.metadata.get("jupyter", {}).get("source_hidden", False) for c in nb.cells] == [
        False, True, False, True, False, True, False,
    ]  # fmt: skip
