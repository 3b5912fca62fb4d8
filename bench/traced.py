"""`nbjobs` under tracemalloc with a heap snapshot on SIGUSR1, to find what grows (load.py --trace).

    python -X tracemalloc=N bench/traced.py SNAPSHOT_DIR serve ...

Each SIGUSR1 writes SNAPSHOT_DIR/heap-<n>.tracemalloc (a tracemalloc.Snapshot dump, after a full garbage
collection) and then SNAPSHOT_DIR/heap-<n>.done, so the caller knows the file is complete. The rest of the
command line is `nbjobs`' own.
"""

from __future__ import annotations

import gc
import itertools
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    numbers = itertools.count(1)

    def dump(signum: int, frame: FrameType | None) -> None:
        number = next(numbers)
        gc.collect()
        tracemalloc.take_snapshot().dump(str(out / f"heap-{number}.tracemalloc"))
        (out / f"heap-{number}.done").write_text(str(tracemalloc.get_traced_memory()))

    signal.signal(signal.SIGUSR1, dump)
    sys.argv = ["nbjobs", *sys.argv[2:]]
    from nbjobs.cli import main as nbjobs

    nbjobs()


if __name__ == "__main__":
    main()
