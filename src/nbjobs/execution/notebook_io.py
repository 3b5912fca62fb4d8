"""Reading, writing and marking notebooks, and capping the output a run may keep."""

from __future__ import annotations

import copy
import json
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.corpus.words import generate_corpus_id
from nbformat.validator import ValidationError, get_validator, iter_validate

from nbjobs.errors import InvalidNotebook
from nbjobs.execution.parameters import new_cell

ERROR_MARKER_TAG = "nbjobs-error-marker"
PAPERMILL_ERROR_MARKER_TAG = "papermill-error-cell-tag"  # papermill's own markers, removed the same way
ERROR_ANCHOR_ID = "nbjobs-error-cell"
_ERROR_STYLE = 'style="color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;"'
_MAX_DETAIL = 300
MAX_TRACEBACK_BYTES = 64 * 1024
_JSON_KINDS = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def read_notebook(data: bytes | str) -> NotebookNode:
    """Parse notebook bytes or text into a validated nbformat 4 node, raising only ``InvalidNotebook``."""
    try:
        return _read(data)
    except InvalidNotebook:
        raise
    except RecursionError:
        raise InvalidNotebook("the file is not a notebook: it is nested too deeply") from None
    except Exception as exc:  # any other failure means the input is not a usable notebook
        raise InvalidNotebook(f"the file is not a notebook: {_short(exc)}") from None


def _read(data: bytes | str) -> NotebookNode:
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidNotebook("the file is not UTF-8 text") from None
    else:
        text = data.removeprefix("\ufeff")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidNotebook(f"the file is not a notebook: not JSON ({_short(exc, 120)})") from None
    if not isinstance(raw, dict):
        kind = _JSON_KINDS.get(type(raw), "a number")
        raise InvalidNotebook(f"the file is not a notebook: expected a JSON object, got {kind}")
    major = raw.get("nbformat")
    if major is None:
        raise InvalidNotebook("the file is not a notebook: missing 'nbformat'")
    if not isinstance(major, int) or isinstance(major, bool):
        raise InvalidNotebook("the file is not a notebook: 'nbformat' is not an integer")
    if major > 4 or major < 1:
        raise InvalidNotebook(f"unsupported nbformat version {major}")
    if major == 4 and "cells" not in raw:
        raise InvalidNotebook("the file is not a notebook: missing 'cells'")
    if major < 4:
        try:
            raw = nbformat.convert(nbformat.reader.reads(text), 4)
        except Exception as exc:  # old formats fail in many ways
            detail = _short(exc)
            raise InvalidNotebook(f"could not upgrade the notebook from nbformat {major}: {detail}") from None
    minor = raw.get("nbformat_minor")
    if not isinstance(minor, int) or isinstance(minor, bool) or minor < 0:
        raise InvalidNotebook("the notebook is not valid nbformat 4: 'nbformat_minor' is not a valid integer")
    if minor >= 5:
        _repair_cell_ids(raw["cells"])
    _allow_unnamed_kernelspec(raw)
    # Validate the on-disk form first: the in-memory conversion assumes well-typed fields.
    error = _first_error(raw, minor)
    if error is not None:
        raise InvalidNotebook(f"the notebook is not valid nbformat 4.{minor}: {_describe(error)}")
    return nbformat.v4.to_notebook_json(raw)


def _allow_unnamed_kernelspec(raw: dict[str, Any]) -> None:
    """Give a kernelspec lacking ``name`` an empty one, so it validates; the run uses the default kernel.

    Jupyter itself opens such a notebook (and asks for a kernel); refusing it as invalid was stricter
    than every other tool. ``unnamed_kernelspec`` tells the engine to warn about it.
    """
    metadata = raw.get("metadata")
    kernelspec = metadata.get("kernelspec") if isinstance(metadata, dict) else None
    if isinstance(kernelspec, dict) and "name" not in kernelspec:
        kernelspec["name"] = ""


def unnamed_kernelspec(nb: NotebookNode) -> bool:
    """True when the notebook has a kernelspec whose ``name`` is empty (or was missing when read)."""
    kernelspec = nb.get("metadata", {}).get("kernelspec")
    return isinstance(kernelspec, dict) and not kernelspec.get("name")


def prepare_for_run(nb: NotebookNode) -> NotebookNode:
    """The notebook as a run starts it, as papermill does: no error markers, no outputs, no counts.

    Markers left by papermill or an earlier nbjobs run are dropped, and every code cell loses the
    outputs and execution count it had, so a cell this run never reaches shows nothing it did not do.
    Changes ``nb`` in place and returns it.
    """
    markers = {ERROR_MARKER_TAG, PAPERMILL_ERROR_MARKER_TAG}
    kept = []
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if isinstance(tags, list) and markers.intersection(t for t in tags if isinstance(t, str)):
            continue
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        kept.append(cell)
    nb.cells = kept
    return nb


def hide_inputs(nb: NotebookNode) -> None:
    """papermill's ``--report-mode``: mark every code cell's source hidden (``jupyter.source_hidden``)."""
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell.metadata["jupyter"] = cell.metadata.get("jupyter", {})
            cell.metadata["jupyter"]["source_hidden"] = True


def timeout_output(seconds: int | None) -> NotebookNode:
    """The error output a cell gets when it ran past the per-cell limit and was stopped."""
    limit = f" of {seconds} seconds" if seconds else ""
    message = f"The cell was interrupted: it ran past the execution timeout{limit} and was stopped"
    return nbformat.v4.new_output("error", ename="CellTimeoutError", evalue=message, traceback=[message])


def _first_error(raw: dict[str, Any], minor: int) -> Exception | None:
    """Return the first schema error, explained by nbformat where its explainer does not trip on bad types."""
    try:
        return next(iter_validate(raw), None)
    except (TypeError, KeyError, AttributeError):
        validator = get_validator(4, minor, name="jsonschema")
        return next(iter(validator.iter_errors(raw)), None) if validator else ValidationError("no schema")


def _repair_cell_ids(cells: Any) -> None:
    """Give 4.5+ cells lacking an ``id`` (or sharing one) a fresh one, as Jupyter does, without warnings."""
    if not isinstance(cells, list):
        return  # validation reports it
    seen: set[str] = set()
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        cell_id = cell.get("id")
        if cell_id is None or (isinstance(cell_id, str) and cell_id in seen):
            cell_id = generate_corpus_id()
            cell["id"] = cell_id
        if isinstance(cell_id, str):
            seen.add(cell_id)


def _describe(error: Exception) -> str:
    message = str(getattr(error, "message", None) or error)
    path = [str(part) for part in getattr(error, "relative_path", ())]
    if path:
        message = f"{'/'.join(path)}: {message}"
    return _short(message, _MAX_DETAIL)


def _short(detail: object, limit: int = _MAX_DETAIL) -> str:
    text = " ".join(str(detail).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_notebook(nb: NotebookNode) -> bytes:
    """Serialise ``nb`` (nbformat 4, as ``read_notebook`` returns it) as UTF-8 notebook JSON.

    The same bytes as ``nbformat.writes``, without its schema validation: ``read_notebook`` validated
    the notebook already, and ``nbformat.writes`` only logs what it finds (it writes either way), so
    validating again cost every run's end a second pass over the schema and changed nothing."""
    return nbformat.v4.nbjson.writes(nb).encode("utf-8")


def kernel_name_of(nb: NotebookNode, default: str) -> str:
    """Return the notebook's ``metadata.kernelspec.name``, or ``default`` when it has none."""
    kernelspec = nb.get("metadata", {}).get("kernelspec")
    name = kernelspec.get("name") if isinstance(kernelspec, dict) else None
    return name if isinstance(name, str) and name else default


def code_cell_indexes(nb: NotebookNode) -> list[int]:
    """Return the indexes of the notebook's code cells."""
    return [index for index, cell in enumerate(nb.cells) if cell.get("cell_type") == "code"]


def add_error_marker(nb: NotebookNode, cell_index: int, *, execution_count: int | None) -> NotebookNode:
    """Return a copy of ``nb`` with papermill-style markers pointing at the failing cell ``cell_index``."""
    if not 0 <= cell_index < len(nb.cells):
        raise IndexError(f"cell index {cell_index} is out of range")
    result = copy.deepcopy(nb)
    label = execution_count if execution_count is not None else cell_index + 1
    banner = (
        f"<span {_ERROR_STYLE}>An Exception was encountered at "
        f"'<a href=\"#{ERROR_ANCHOR_ID}\">In [{label}]</a>'.</span>"
    )
    anchor = f'<span id="{ERROR_ANCHOR_ID}"></span>'
    for index, source in ((cell_index, anchor), (0, banner)):
        cell = new_cell(result, nbformat.v4.new_markdown_cell, source)
        cell.metadata["tags"] = [ERROR_MARKER_TAG]
        result.cells.insert(index, cell)
    return result


class OutputCap:
    """Bound the output kept per cell and per notebook, truncating once and dropping the rest."""

    def __init__(self, max_cell_bytes: int, max_notebook_bytes: int) -> None:
        if max_cell_bytes < 0 or max_notebook_bytes < 0:
            raise ValueError("output limits must not be negative")
        self.max_cell_bytes = max_cell_bytes
        self.max_notebook_bytes = max_notebook_bytes
        self.truncated = False
        self.truncated_cells: list[int] = []
        self.total_bytes = 0
        self._cell_bytes: dict[int, int] = {}
        self._closed_cells: set[int] = set()
        self._notebook_closed = False

    def admit(self, cell_index: int, output: dict[str, Any]) -> dict[str, Any] | None:
        """Return ``output`` if it fits, a truncated copy when it first overflows, else None (drop it)."""
        if output.get("output_type") == "error":
            output = _cap_error(output)
            self._count(cell_index, _size(output))
            return output
        if self._notebook_closed or cell_index in self._closed_cells:
            self._mark(cell_index)
            return None
        size = _size(output)
        cell_room = self.max_cell_bytes - self._cell_bytes.get(cell_index, 0)
        notebook_room = self.max_notebook_bytes - self.total_bytes
        room = max(0, min(cell_room, notebook_room))
        if size <= room:
            self._count(cell_index, size)
            return output
        if notebook_room <= cell_room:
            self._notebook_closed = True
            notice = f"the notebook exceeded the limit of {self.max_notebook_bytes} bytes"
        else:
            notice = f"this cell exceeded the limit of {self.max_cell_bytes} bytes"
        self._closed_cells.add(cell_index)
        self._mark(cell_index)
        message = f"\n[nbjobs] output truncated: {notice}\n"
        if output.get("output_type") == "stream":
            kept = _fit(_text(output.get("text", "")), room)
            self._count(cell_index, _stored_len(kept))
            return nbformat.from_dict({**output, "text": kept + message})
        return nbformat.v4.new_output("stream", name="stderr", text=message)

    def _count(self, cell_index: int, size: int) -> None:
        self._cell_bytes[cell_index] = self._cell_bytes.get(cell_index, 0) + size
        self.total_bytes += size

    def _mark(self, cell_index: int) -> None:
        self.truncated = True
        if cell_index not in self.truncated_cells:
            self.truncated_cells.append(cell_index)


def coalesce_streams(cell: NotebookNode, **_: Any) -> None:
    """Merge a cell's stdout (and stderr) outputs into one each and apply carriage returns as a
    terminal would: nbclient's ``coalesce_streams`` in linear time. Its carriage-return regex
    (``.*\\r(?=[^\\n])``) is quadratic in the line length, so one 1 MB line without a newline kept
    the runner busy for hours after the cell had ended."""
    outputs: list[NotebookNode] = []
    streams: dict[str, NotebookNode] = {}
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            name = output.get("name", "stdout")
            if name in streams:
                streams[name]["text"] += _text(output.get("text", ""))
                continue
            output["text"] = _text(output.get("text", ""))
            streams[name] = output
        outputs.append(output)
    for output in streams.values():
        output["text"] = _apply_controls(output["text"])
    for i, output in enumerate(outputs):  # stdout before stderr when they are adjacent, as nbclient does
        nxt = outputs[i + 1] if i + 1 < len(outputs) else None
        if output.get("name") == "stderr" and nxt is not None and nxt.get("name") == "stdout":
            outputs[i], outputs[i + 1] = nxt, output
    cell["outputs"] = outputs


def _apply_controls(text: str) -> str:
    if "\r" in text:  # a carriage return not ending a line starts the line over
        lines = text.split("\n")
        for i, line in enumerate(lines):
            cut = line.rfind("\r", 0, len(line) - 1)
            if cut >= 0:
                lines[i] = line[cut + 1 :]
        text = "\n".join(lines)
    return text


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return "".join(value)
    return json.dumps(value, default=str)


# A line of output text is stored as its own indented JSON string: `      "text\n",` plus a newline.
LINE_COST = 10


def _stored_len(text: str) -> int:
    """Bytes ``text`` takes in the saved notebook: UTF-8, JSON escapes, and one JSON string per line."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2 + LINE_COST * text.count("\n")


def _fit(text: str, room: int) -> str:
    """The longest prefix of ``text`` whose stored size is at most ``room``."""
    kept = text[: max(0, room)]
    while kept and (size := _stored_len(kept)) > room:
        kept = kept[: min(len(kept) - 1, len(kept) * room // size)]
    return kept


def _value_len(value: Any) -> int:
    """Stored size of text (a string or list of lines) or of a JSON value (kept as JSON, not as text)."""
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return _stored_len(_text(value))
    return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8"))


def _size(output: dict[str, Any]) -> int:
    """Stored size of an output: stream text, the values of a data bundle, or the whole dict otherwise."""
    kind = output.get("output_type")
    if kind == "stream":
        return _stored_len(_text(output.get("text", "")))
    if kind == "error":
        return sum(_value_len(output.get(key, "")) for key in ("ename", "evalue", "traceback"))
    data = output.get("data")
    if isinstance(data, dict):
        return sum(_value_len(value) for value in data.values())
    return _value_len(output)


def _cap_error(output: dict[str, Any]) -> dict[str, Any]:
    """Return the error output with its ``evalue`` and ``traceback`` cut to ``MAX_TRACEBACK_BYTES``."""
    evalue = _text(output.get("evalue", ""))
    traceback = output.get("traceback", [])
    lines = traceback if isinstance(traceback, list) else [traceback]
    kept: list[str] = []
    budget = MAX_TRACEBACK_BYTES
    for line in map(_text, lines):
        if len(line) > budget:
            kept += [line[:budget], "[nbjobs] traceback truncated"]
            break
        kept.append(line)
        budget -= len(line)
    if kept == traceback and len(evalue) <= MAX_TRACEBACK_BYTES:
        return output
    return nbformat.from_dict({**output, "evalue": evalue[:MAX_TRACEBACK_BYTES], "traceback": kept})
