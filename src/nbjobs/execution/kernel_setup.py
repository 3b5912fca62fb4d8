"""Code run silently in a Python kernel before the notebook's first cell.

It caps what ``sys.stdout``/``sys.stderr`` send per cell at the source, so a cell printing 200 MB
never ships 200 MB through ZeroMQ into the runner (whose memory would otherwise follow the kernel's
flush size). The runner's own OutputCap stays the authority that marks and records truncation; this
only keeps a little more than the cap so that the runner sees the overflow.
"""

from __future__ import annotations

from collections.abc import Mapping

_TEMPLATE = """
def _nbjobs_cap_streams(limit):
    import sys

    class CappedStream:
        def __init__(self, stream):
            self._nbjobs_stream = stream
            self._nbjobs_used = 0

        def write(self, text):
            room = limit - self._nbjobs_used
            if room > 0:
                self._nbjobs_used += min(len(text), room)
                self._nbjobs_stream.write(text[:room])
            return len(text)

        def __getattr__(self, name):
            return getattr(self._nbjobs_stream, name)

    streams = [CappedStream(sys.stdout), CappedStream(sys.stderr)]
    sys.stdout, sys.stderr = streams

    def reset(*_args):
        for stream in streams:
            stream._nbjobs_used = 0

    get_ipython().events.register("pre_run_cell", reset)


_nbjobs_cap_streams({limit})
del _nbjobs_cap_streams
"""


def stream_cap_code(max_cell_bytes: int) -> str:
    """Python source that caps each cell's stdout and stderr at slightly more than ``max_cell_bytes``."""
    return _TEMPLATE.format(limit=int(max_cell_bytes) + 4096)


def job_context_code(cwd: str, env: Mapping[str, str] | None) -> str:
    """Python source that gives a pre-started kernel its job's working directory and environment."""
    lines = ["import os as _nbjobs_os", f"_nbjobs_os.chdir({cwd!r})"]
    if env is not None:
        lines += ["_nbjobs_os.environ.clear()", f"_nbjobs_os.environ.update({dict(env)!r})"]
    lines.append("del _nbjobs_os")
    return "\n".join(lines)


def value_expression(name: str) -> str:
    """A Python expression that evaluates, in the kernel, to variable ``name`` as JSON text.

    JSON-native values pass as they are; objects with ``to_json()`` (ArcGIS FeatureSet/RecordSet,
    pandas) through it; dates as ISO strings; numpy values through ``tolist()``; anything else as str().
    """
    return (
        "(lambda v, json=__import__('json'): json.dumps("
        "json.loads(v.to_json()) if callable(getattr(v, 'to_json', None)) and not isinstance(v, type) "
        "else v, "
        "default=lambda o: o.isoformat() if hasattr(o, 'isoformat') "
        "else o.tolist() if hasattr(o, 'tolist') else str(o)))"
        f"({name})"
    )
