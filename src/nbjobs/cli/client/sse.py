"""A Server-Sent-Events reader over decoded lines, as the HTML standard's event-stream parser says.

``data`` lines join with newlines, a blank line dispatches, ``:`` starts a comment (the heartbeat), one
space after the colon is dropped, an ``id`` holding NUL is ignored, ``retry`` takes digits only, and a
last event without its blank line is discarded (the connection dropped mid-event) — its ``id`` too, so
a resumed stream asks for what followed the last event really received.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """One dispatched event; ``id`` is the last event id in force when it was dispatched."""

    event: str = "message"
    data: str = ""
    id: str = ""


class EventReader:
    """Turns lines into events; keeps ``last_id`` and ``retry_ms`` across events (and reconnects)."""

    def __init__(self, last_id: str = "") -> None:
        self.last_id = last_id
        self.retry_ms: int | None = None

    def events(self, lines: Iterable[str]) -> Iterator[Event]:
        id_buffer = self.last_id  # becomes last_id when an event block completes
        event_type = ""
        data: list[str] = []
        for raw in lines:
            line = raw.rstrip("\r\n")
            if line.startswith("\ufeff"):
                line = line[1:]
            if not line:
                self.last_id = id_buffer
                if data:
                    yield Event(event_type or "message", "\n".join(data), self.last_id)
                event_type, data = "", []
                continue
            if line.startswith(":"):
                continue
            name, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if name == "event":
                event_type = value
            elif name == "data":
                data.append(value)
            elif name == "id" and "\0" not in value:
                id_buffer = value
            elif name == "retry" and value.isascii() and value.isdigit():
                self.retry_ms = int(value)


def iter_events(lines: Iterable[str], last_id: str = "") -> Iterator[Event]:
    """The events in ``lines`` (a convenience over ``EventReader``)."""
    return EventReader(last_id).events(lines)
