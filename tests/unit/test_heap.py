"""nbjobs/heap.py on this machine's glibc: the trim gives freed memory back (RSS falls), the arena cap
is accepted, and both settings reach the process (a trim duty in each root; 0 turns it off)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nbjobs.heap import Heap
from nbjobs.roots.parts import heap_duties
from nbjobs.settings import load_settings

# Fragments the C heap the way a busy server does: many malloc'd blocks (above pymalloc's 512 B, below
# the 128 KiB mmap threshold), every 50th kept alive, the rest freed. glibc keeps the freed pages (they
# sit below live blocks, so no heap top shrinks) until malloc_trim releases them.
FRAGMENT = """
import json, sys
import psutil
from nbjobs.heap import Heap
heap = Heap()
assert heap.limit_arenas(2)
blocks = [bytearray(4096) for _ in range(60_000)]  # ~240 MiB
kept = blocks[::50]
del blocks
rss = lambda: psutil.Process().memory_info().rss
before = rss()
trimmed = heap.trim()
print(json.dumps({"before": before, "after": rss(), "trimmed": trimmed, "kept": len(kept)}))
"""


def test_the_trim_gives_a_fragmented_heap_back_to_the_system():
    if not Heap().supported:
        pytest.skip("not glibc: nbjobs/heap.py is a no-op here")
    done = subprocess.run([sys.executable, "-c", FRAGMENT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["trimmed"] is True
    # ~235 MiB were freed; without the trim glibc keeps nearly all of it
    assert figures["before"] - figures["after"] > 100 * 2**20, figures


def test_an_arena_count_of_zero_leaves_glibc_alone():
    assert Heap().limit_arenas(0) is False


def test_each_root_gets_a_trim_duty_unless_it_is_turned_off(tmp_path: Path):
    on = load_settings({}, data_dir=tmp_path)
    assert on.housekeeping.malloc_arenas == 2 and on.housekeeping.heap_trim_seconds == 30
    [duty] = heap_duties(on)
    assert duty.name == "trim-heap" and duty.every_seconds == 30
    off = load_settings({"NBJOBS_HEAP_TRIM_SECONDS": "0"}, data_dir=tmp_path)
    assert heap_duties(off) == []


def test_negative_heap_settings_are_refused(tmp_path: Path):
    from nbjobs.errors import ConfigurationError

    for name in ("NBJOBS_MALLOC_ARENAS", "NBJOBS_HEAP_TRIM_SECONDS"):
        with pytest.raises(ConfigurationError, match="must be 0 or more"):
            load_settings({name: "-1"}, data_dir=tmp_path)
