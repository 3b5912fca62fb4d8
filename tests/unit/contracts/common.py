"""What the contract suites share: the structural check of an implementation against its Protocol, and
what adding a record under a taken key may raise."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

# A second record under a taken key is refused: the SQL stores by their primary or unique key, the
# in-memory fakes with ValueError (as MemoryJobStore does for a duplicate job id).
DUPLICATE = (IntegrityError, ValueError)


def protocol_methods(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")]


def parameters(function: Callable[..., object]) -> list[tuple[str, object, object]]:
    """Name, kind and default of each parameter (annotations are left to the type checker)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def assert_implements(protocol: type, *implementations: type) -> None:
    methods = protocol_methods(protocol)
    assert methods, f"{protocol.__name__} declares no methods"
    for impl in implementations:
        for name in methods:
            assert hasattr(impl, name), f"{impl.__name__} lacks {protocol.__name__}.{name}"
            want, got = parameters(getattr(protocol, name)), parameters(getattr(impl, name))
            assert got == want, f"{impl.__name__}.{name}{got} differs from {protocol.__name__}.{name}{want}"
