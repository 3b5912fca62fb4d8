"""A running job's live view: which code cells ran (and how long each took), which one is running, and a
bounded tail of what each cell printed. Recorded by the job's supervisor, kept in the store beside the job
(so every API server and page reads the same), streamed to subscribers (docs/app.md, docs/api.md).

Bounds: per cell and stream the last ``TAIL_CHARS`` characters, per job ``TOTAL_TAIL_CHARS`` (the oldest
cells' tails go first), the newest ``MAX_CELLS`` cells' states. ``end`` counts every character a stream
of a cell wrote, kept or not, so a follower prints each character once and can say what it missed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TAIL_CHARS = 16 * 1024
TOTAL_TAIL_CHARS = 64 * 1024
MAX_CELLS = 1000

COMPLETED = "completed"
FAILED = "failed"
EXECUTING = "executing"
STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class LiveCell:
    """A code cell that ran or is running: ``state`` is completed, failed or executing."""

    index: int
    state: str
    start_time: int  # epoch ms
    duration_ms: int = 0  # once it ended

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"cellIndex": self.index, "state": self.state}
        if self.state == EXECUTING:
            wire["startTime"] = self.start_time
        else:
            wire["durationMs"] = self.duration_ms
        return wire


@dataclass(frozen=True)
class StreamTail:
    """The last characters a cell wrote to one stream, and how many it wrote in all (``end``)."""

    cell_index: int
    name: str
    text: str
    end: int

    def to_wire(self) -> dict[str, Any]:
        return {"cellIndex": self.cell_index, "name": self.name, "text": self.text, "end": self.end}


@dataclass(frozen=True)
class LiveProgress:
    """One attempt's live view, as stored (``to_store``) and as sent (``to_wire``, with the job's fields)."""

    attempt: int = 0
    code_cells: int = 0
    cells: tuple[LiveCell, ...] = ()
    output: tuple[StreamTail, ...] = ()
    output_truncated: bool = False

    def to_store(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "codeCells": self.code_cells,
            "cells": [[c.index, c.state, c.start_time, c.duration_ms] for c in self.cells],
            "output": [[t.cell_index, t.name, t.text, t.end] for t in self.output],
            "outputTruncated": self.output_truncated,
        }

    @classmethod
    def from_store(cls, data: dict[str, Any]) -> LiveProgress:
        return cls(
            attempt=int(data.get("attempt", 0)),
            code_cells=int(data.get("codeCells", 0)),
            cells=tuple(LiveCell(int(i), str(s), int(t), int(d)) for i, s, t, d in data.get("cells", ())),
            output=tuple(StreamTail(int(i), str(n), str(x), int(e)) for i, n, x, e in data.get("output", ())),
            output_truncated=bool(data.get("outputTruncated", False)),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "codeCells": self.code_cells,
            "cells": [c.to_wire() for c in self.cells],
            "output": [t.to_wire() for t in self.output],
            "outputTruncated": self.output_truncated,
        }


@dataclass
class LiveRecorder:
    """Builds one attempt's ``LiveProgress`` from the runner's events; ``changed`` says a write is due."""

    attempt: int
    code_cells: int = 0
    cells: list[LiveCell] = field(default_factory=list)
    tails: dict[tuple[int, str], StreamTail] = field(default_factory=dict)  # insertion order: oldest first
    dropped_tails: bool = False
    changed: bool = False

    def begin(self, index: int, now: int, code_cells: int = 0) -> None:
        """Cell ``index`` starts; a cell still marked executing before it has completed."""
        if code_cells:
            self.code_cells = code_cells
        if self.cells and self.cells[-1].index == index and self.cells[-1].state == EXECUTING:
            return
        self._close_running(now, COMPLETED)
        self.cells.append(LiveCell(index, EXECUTING, now))
        del self.cells[:-MAX_CELLS]
        self.changed = True

    def end(self, index: int, ok: bool, now: int, duration_ms: int | None = None) -> None:
        """Cell ``index`` ended (``ok``: without an error)."""
        if not self.cells or self.cells[-1].index != index:
            self.begin(index, now)
        self._close_running(now, COMPLETED if ok else FAILED, duration_ms)

    def stop(self, now: int, failed_cell: int | None) -> None:
        """The run ended: the cell still executing failed if the run failed there, else it completed."""
        if self.cells and self.cells[-1].state == EXECUTING:
            failed = failed_cell is not None and self.cells[-1].index == failed_cell
            self._close_running(now, FAILED if failed else COMPLETED)

    def output(self, index: int, name: str, text: str, chars: int | None = None) -> None:
        """``text`` is the newest part of what cell ``index`` wrote to ``name``; ``chars`` (default
        ``len(text)``) is how much it wrote since the last call, ``text`` being at most its tail."""
        if not text and not chars:
            return
        name = name if name in STREAMS else "stdout"
        key = (index, name)
        old = self.tails.pop(key, None)
        written = len(text) if chars is None else max(chars, len(text))
        kept = ((old.text if old else "") + text)[-TAIL_CHARS:]
        self.tails[key] = StreamTail(index, name, kept, (old.end if old else 0) + written)
        self._trim()
        self.changed = True

    def snapshot(self) -> LiveProgress:
        self.changed = False
        return LiveProgress(
            attempt=self.attempt,
            code_cells=self.code_cells,
            cells=tuple(self.cells),
            output=tuple(sorted(self.tails.values(), key=lambda t: (t.cell_index, t.name))),
            output_truncated=self.dropped_tails,
        )

    def _close_running(self, now: int, state: str, duration_ms: int | None = None) -> None:
        if self.cells and self.cells[-1].state == EXECUTING:
            cell = self.cells[-1]
            took = duration_ms if duration_ms is not None else max(now - cell.start_time, 0)
            self.cells[-1] = LiveCell(cell.index, state, cell.start_time, took)
            self.changed = True

    def _trim(self) -> None:
        total = sum(len(t.text) for t in self.tails.values())
        while total > TOTAL_TAIL_CHARS and len(self.tails) > 1:  # one tail alone fits: TAIL_CHARS < TOTAL
            oldest = next(iter(self.tails))
            total -= len(self.tails.pop(oldest).text)
            self.dropped_tails = True


@dataclass(frozen=True)
class JobChange:
    """A job as the change feed sees it: enough for a job-list row and to decide who may see it."""

    job_id: str
    username: str
    type: str
    status: str
    runtime_name: str
    date_created: int
    revision: int
    progress_percent: int
    progress_message: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id,
            "type": self.type,
            "status": self.status,
            "username": self.username,
            "runtimeName": self.runtime_name,
            "created": self.date_created,
            "revision": self.revision,
            "progress": {"percent": self.progress_percent, "message": self.progress_message},
        }
