"""What the in-memory stores share: the answer the SQL stores' keys give to a second insert."""

from __future__ import annotations

from collections.abc import Iterable


def refuse_taken(key: object, taken: Iterable[object]) -> None:
    """Raise ValueError if ``key`` is already in ``taken``: what a primary or unique key does in SQL
    (there an IntegrityError), so a test that inserts one record twice fails as it would in production."""
    if key in taken:
        raise ValueError(f"duplicate key {key!r}")
