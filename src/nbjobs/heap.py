"""The process's C heap: few glibc malloc arenas, trimmed now and then, so that a long-running server's
RSS stays flat instead of keeping every page it ever freed.

Why (docs/reliability.md, "Memory"): under the load bench the server's Python heap (tracemalloc) was
flat while its RSS grew by tens of MiB: the growth was freed memory glibc kept. Each thread that
allocates gets a malloc arena (up to 8 per core), and a request served by 40 thread-pool threads leaves
freed chunks scattered over many arenas, which glibc only returns to the system from the top of each
heap. Two arenas and a periodic ``malloc_trim(0)`` (which also releases free pages inside the heaps)
keep the RSS where the live data is.

On a C library without these calls (musl, macOS) both are no-ops that say so.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # <malloc.h>


@functools.cache  # once per process: every root asks, and a lookup by name may run ldconfig
def _glibc() -> Any:
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on, whatever its file name
    except OSError:
        return None
    if not (hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt")):
        return None
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc


class Heap:
    """This process's malloc, if it is glibc's."""

    def __init__(self) -> None:
        self._libc = _glibc()

    @property
    def supported(self) -> bool:
        return self._libc is not None

    def limit_arenas(self, count: int) -> bool:
        """Cap the malloc arenas at ``count`` (0: leave glibc's default). Call it before the process
        starts its threads: arenas already made stay. True if the cap was set."""
        if count <= 0 or self._libc is None:
            return False
        if self._libc.mallopt(M_ARENA_MAX, count) != 1:
            log.warning("could not limit malloc arenas to %d", count)
            return False
        return True

    def trim(self) -> bool:
        """Give the free memory of every arena back to the system; True if some was released."""
        return self._libc is not None and self._libc.malloc_trim(0) == 1
