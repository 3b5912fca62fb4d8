"""Execute one notebook in one fresh kernel: inject parameters, run cells, cap output, report progress.

This is the only place that drives nbclient. The runner process wraps it for jobs, and
``nbjobs run`` calls it directly; both therefore behave the same.
"""

from __future__ import annotations

import ast
import contextlib
import json
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from nbjobs.errors import InvalidNotebook, InvalidParameters
from nbjobs.execution.kernel_setup import job_context_code, stream_cap_code, value_expression
from nbjobs.execution.kernels import (
    SPAWN,
    RunAsKernelManager,
    StartMethod,
    WarmKernel,
    kernel_exists,
    kernel_pid,
    new_kernel_manager,
    resolve_kernel_name,
)
from nbjobs.execution.limits import Limits, RlimitBackend, backend_named
from nbjobs.execution.notebook_io import (
    OutputCap,
    add_error_marker,
    coalesce_streams,
    code_cell_indexes,
    hide_inputs,
    kernel_name_of,
    prepare_for_run,
    read_notebook,
    timeout_output,
    unnamed_kernelspec,
    write_notebook,
)
from nbjobs.execution.parameters import inject_parameters, remove_injected_cell
from nbjobs.execution.processes import kill_process_tree
from nbjobs.models.jobs import Failure, FailureReason
from nbjobs.models.parameters import NotebookParameters


@dataclass(frozen=True)
class ExecutionRequest:
    """Everything one execution needs; plain data so it can cross a process boundary as JSON."""

    notebook: bytes
    # Parsed at the edge; its literals are pasted as they are (a stored job's are rendered on first use).
    parameters: NotebookParameters = field(default_factory=NotebookParameters)
    kernel_name: str = ""  # empty: the notebook's kernelspec, else default_kernel_name
    default_kernel_name: str = "python3"
    save_injected_parameters: bool = False
    cwd: str = "."
    env: Mapping[str, str] | None = None
    cell_timeout_seconds: int | None = None
    max_cell_output_bytes: int = 5 * 1024 * 1024
    max_notebook_output_bytes: int = 50 * 1024 * 1024
    memory_bytes: int = 0  # limits of the kernel and its children; 0 = none
    swap_bytes: int = 0
    cpus: float = 0.0
    limit_backend: str = "rlimit"  # as the server detected it: cgroup-v2 | cgroup-v1 | rlimit
    limit_group: str = ""  # the job's cgroup name
    output_names: tuple[str, ...] = ()  # variables to read back after the last cell (web tool outputs)
    run_as: str = ""  # OS user the kernel runs as ("" = the server's own)
    report_mode: bool = False  # papermill's --report-mode: code cells' inputs hidden in the output
    fork_socket: str = ""  # a cold start asks the runtime's fork template there ("" = spawn)
    fork_fallback: str = ""  # why the kernel is spawned although the runtime asks for fork

    @property
    def start(self) -> StartMethod:
        return StartMethod(self.fork_socket, self.fork_fallback)

    @property
    def limits(self) -> Limits:
        return Limits(self.memory_bytes, self.swap_bytes, self.cpus)


@dataclass(frozen=True)
class Outcome:
    """How an execution ended. ``notebook`` holds the executed notebook whenever one was read."""

    failure: Failure | None
    notebook: bytes | None
    cells_executed: int = 0
    output_truncated: bool = False
    truncated_cells: list[int] = field(default_factory=list)
    # For each requested output name: {"value": <JSON value>} or {"error": "<why it has none>"}.
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # CPU the cells used in the kernel and its children; 0 when unknown
    warnings: list[str] = field(default_factory=list)  # what the run worked around (job results)
    start_method: str = ""  # fork | spawn: how the kernel that ran the cells was started ("" = none)

    @property
    def ok(self) -> bool:
        return self.failure is None


class Listener(Protocol):
    """Receives what happens during an execution."""

    def kernel_started(self, pid: int) -> None: ...

    def progress(self, percent: int, message: str, cell_index: int, code_cells: int = 0) -> None:
        """Cell ``cell_index`` starts (-1: the run is done); ``code_cells``: how many there are."""
        ...

    def output(self, cell_index: int, name: str, text: str) -> None:
        """A cell wrote ``text`` to stream ``name`` (stdout or stderr), before any output cap."""
        ...

    def cell_ended(self, cell_index: int, ok: bool) -> None:
        """Cell ``cell_index`` ended, ``ok`` unless it raised or timed out."""
        ...

    def should_stop(self) -> bool:
        """True once the run should start no further cell (cancel or deadline)."""
        ...


class _CappedClient(NotebookClient):
    """nbclient with a bound on retained output: dropped output is never kept in memory."""

    def __init__(self, nb: NotebookNode, cap: OutputCap, listener: Listener, **kw: Any) -> None:
        super().__init__(nb, **kw)
        self._cap = cap
        self._listener = listener

    def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> NotebookNode | None:
        if msg.get("msg_type") == "stream":
            content = msg.get("content") or {}
            self._listener.output(
                cell_index, str(content.get("name", "stdout")), str(content.get("text", ""))
            )
        before = len(outs)
        out = super().output(outs, msg, display_id, cell_index)
        if out is None or len(outs) == before:
            return out
        admitted = self._cap.admit(cell_index, out)
        if admitted is None:
            outs.pop()
            return None
        if admitted is not out:
            outs[-1] = NotebookNode(admitted)
        return outs[-1]


def execute(request: ExecutionRequest, listener: Listener, warm: WarmKernel | None = None) -> Outcome:
    """Run the notebook to its end or first error and return what happened; never raises for bad input.

    With ``warm``, a kernel started ahead is used when it is the kernel the notebook needs and still
    alive; otherwise it is discarded and a fresh kernel is started (the cold path).
    """
    try:
        nb = prepare_for_run(read_notebook(request.notebook))
    except InvalidNotebook as exc:
        return Outcome(Failure(FailureReason.INVALID_NOTEBOOK, exc.message), None)
    try:
        nb, injected_at = inject_parameters(nb, request.parameters)
    except InvalidParameters as exc:  # only a stored value edited by hand: parsed ones always render
        return Outcome(Failure(FailureReason.INVALID_PARAMETERS, exc.message), None)
    if request.report_mode:
        hide_inputs(nb)

    warnings: list[str] = []
    kernel_name = resolve_kernel_name(request.kernel_name or kernel_name_of(nb, request.default_kernel_name))
    if unnamed_kernelspec(nb):
        if not request.kernel_name:
            warnings.append(
                f"The notebook's kernelspec has no 'name'; it ran on the default kernel '{kernel_name}'"
            )
        nb.metadata.kernelspec["name"] = kernel_name  # the output names the kernel it ran on
    if warm is not None and (warm.kernel_name != kernel_name or not warm.alive()):
        warm.discard()
        warm = None
    if warm is None and not kernel_exists(kernel_name):
        message = f"No such kernel named '{kernel_name}' is installed on this server"
        not_found = Failure(FailureReason.KERNEL_NOT_FOUND, message)
        return Outcome(not_found, _saved(nb, injected_at, request), warnings=warnings)

    cap = OutputCap(request.max_cell_output_bytes, request.max_notebook_output_bytes)
    if warm is not None:
        km, sockets = warm.km, warm.sockets
    else:
        km, sockets = new_kernel_manager(kernel_name, request.run_as, request.start)
    client = _CappedClient(
        nb,
        cap,
        listener,
        km=km,
        kernel_name=kernel_name,
        timeout=request.cell_timeout_seconds,
        shutdown_kernel="immediate",
        coalesce_streams=False,  # done by the hook: nbclient's own is quadratic in the line length
        on_cell_executed=coalesce_streams,
        resources={"metadata": {"path": request.cwd}},
    )
    if warm is not None:
        client.kc = warm.kc
    values: dict[str, dict[str, Any]] = {}
    usage = _Usage()
    try:
        failure, executed = _run_cells(client, nb, request, listener, warm=warm, values=values, usage=usage)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    method = km.start_method if isinstance(km, RunAsKernelManager) else SPAWN
    if isinstance(km, RunAsKernelManager) and km.fallback:
        warnings.append(f"The kernel was started as a new process, not forked from a template: {km.fallback}")
    marked = (FailureReason.CELL_ERROR, FailureReason.TIMEOUT)
    if failure is not None and failure.reason in marked and failure.cell_index is not None:
        at = failure.cell_index
        nb = add_error_marker(nb, at, execution_count=_count_of(nb, at))
        if injected_at is not None:  # one marker went in at the top, another just above the failing cell
            injected_at += 2 if injected_at >= at else 1
    return Outcome(
        failure,
        _saved(nb, injected_at, request),
        cells_executed=executed,
        output_truncated=cap.truncated,
        truncated_cells=list(cap.truncated_cells),
        values=values,
        cpu_seconds=usage.cpu_seconds,
        warnings=warnings,
        start_method=method if kernel_pid(km) else "",
    )


def _run_cells(
    client: _CappedClient,
    nb: NotebookNode,
    request: ExecutionRequest,
    listener: Listener,
    *,
    warm: WarmKernel | None,
    values: dict[str, dict[str, Any]],
    usage: _Usage,
) -> tuple[Failure | None, int]:
    code_cells = code_cell_indexes(nb)
    total = max(len(code_cells), 1)
    executed = 0
    pid = 0
    start_kwargs: dict[str, Any] = {"cwd": request.cwd}
    if request.env is not None:
        start_kwargs["env"] = dict(request.env)
    try:
        with client.setup_kernel(**start_kwargs):
            pid = kernel_pid(client.km)
            _limit(pid, request)
            listener.kernel_started(pid)
            if nb.metadata.get("kernelspec", {}).get("language", "python") == "python":
                setup = []
                if warm is not None:  # started before its job: give it the job's cwd and environment
                    setup.append(job_context_code(request.cwd, request.env))
                if warm is None or warm.stream_cap != request.max_cell_output_bytes:
                    setup.append(stream_cap_code(request.max_cell_output_bytes))
                _run_silently(client, "\n".join(setup))
            usage.cpu_at_start = _cpu_seconds(pid, live_children=False)  # the kernel's start is not the job's
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if listener.should_stop():
                    return Failure(FailureReason.CANCELLED, "Stopped before cell", cell_index=index), executed
                listener.progress(
                    executed * 100 // total,
                    f"Executing cell {executed + 1} of {total}",
                    index,
                    len(code_cells),
                )
                try:
                    client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
                except CellExecutionError as exc:
                    clean = _clean_exit(exc)
                    listener.cell_ended(index, clean)
                    if not clean:
                        return _cell_failure(exc, index), executed
                    executed += 1  # sys.exit() / sys.exit(0): the run ends here, successfully
                    break
                except CellTimeoutError as exc:
                    listener.cell_ended(index, False)
                    cell.outputs.append(timeout_output(request.cell_timeout_seconds))
                    return Failure(
                        FailureReason.TIMEOUT, str(exc).splitlines()[0], cell_index=index
                    ), executed
                listener.cell_ended(index, True)
                executed += 1
            if request.output_names:
                values.update(_read_values(client, request.output_names, request.max_cell_output_bytes))
            listener.progress(100, f"Executed {executed} of {len(code_cells)} cells", -1, len(code_cells))
            return None, executed
    except DeadKernelError:
        return Failure(FailureReason.KERNEL_DIED, "The kernel died while executing a cell"), executed
    except RuntimeError as exc:  # kernel failed to start or answer
        return Failure(FailureReason.KERNEL_DIED, f"The kernel could not be started: {exc}"), executed
    finally:
        if pid:
            usage.cpu_seconds = round(max(_cpu_seconds(pid) - usage.cpu_at_start, 0.0), 3)
            kill_process_tree(pid)


@dataclass
class _Usage:
    cpu_at_start: float = 0.0  # before the first cell: what starting the kernel cost
    cpu_seconds: float = 0.0  # the cells' CPU time


def _cpu_seconds(pid: int, *, live_children: bool = True) -> float:
    """CPU time the kernel and its waited-for (and, with ``live_children``, live) children used so far;
    0 if it is gone. The live children take a scan of every process, so the measure before the first
    cell (a fresh kernel has none) skips it."""
    try:
        kernel = psutil.Process(pid)
        total = sum(kernel.cpu_times()[:4])  # user, system, children_user, children_system
        for child in kernel.children(recursive=True) if live_children else ():
            with contextlib.suppress(psutil.Error):
                total += sum(child.cpu_times()[:2])
        return round(total, 3)
    except psutil.Error:
        return 0.0


def _limit(pid: int, request: ExecutionRequest) -> None:
    """Put the kernel under its job's limits before it runs any of the job's code."""
    limits = request.limits
    if not limits or not pid:
        return
    try:
        backend_named(request.limit_backend).apply(request.limit_group or str(pid), pid, limits)
    except OSError as exc:  # cgroups went away or were never writable: keep at least the memory cap
        print(f"cgroup limits failed ({exc}); falling back to RLIMIT_AS", file=sys.stderr)
        RlimitBackend().apply("", pid, limits)


def _read_values(client: NotebookClient, names: tuple[str, ...], max_bytes: int) -> dict[str, dict[str, Any]]:
    """Read variables back from the kernel as JSON, through ``user_expressions`` (no cell, no output)."""
    assert client.kc is not None
    expressions = {name: value_expression(name) for name in names if name.isidentifier()}
    msg_id = client.kc.execute("", silent=True, store_history=False, user_expressions=expressions)
    reply = client.wait_for_reply(msg_id) or {}
    found = reply.get("content", {}).get("user_expressions", {})
    values: dict[str, dict[str, Any]] = {}
    for name in names:
        result = found.get(name)
        if result is None:
            values[name] = {"error": f"'{name}' is not a valid variable name"}
        elif result.get("status") != "ok":
            values[name] = {"error": f"{result.get('ename', 'Error')}: {result.get('evalue', '')}"}
        else:
            text = ast.literal_eval(result["data"]["text/plain"])  # the repr of a JSON string
            if len(text) > max_bytes:
                values[name] = {"error": f"'{name}' is larger than {max_bytes} bytes as JSON"}
            else:
                values[name] = {"value": json.loads(text)}
    return values


def _run_silently(client: NotebookClient, code: str) -> None:
    """Queue set-up code ahead of the first cell without waiting for it.

    The kernel runs requests in order, so the code has run before any cell does; its reply and its
    IOPub status carry its own msg_id, which nbclient ignores while it waits on a cell's.
    """
    assert client.kc is not None
    client.kc.execute(code, silent=True, store_history=False)


def _clean_exit(exc: CellExecutionError) -> bool:
    """``sys.exit()``, ``sys.exit(0)``, ``raise SystemExit``: a successful end, as papermill reads it."""
    return getattr(exc, "ename", "") == "SystemExit" and getattr(exc, "evalue", "") in ("", "0")


def _cell_failure(exc: CellExecutionError, index: int) -> Failure:
    ename = getattr(exc, "ename", "") or "Error"
    evalue = getattr(exc, "evalue", "") or ""
    tb = getattr(exc, "traceback", "") or ""
    lines = tuple(tb.splitlines()[-200:]) if isinstance(tb, str) else tuple(tb)
    return Failure(
        FailureReason.CELL_ERROR,
        f"{ename}: {evalue}" if evalue else ename,
        cell_index=index,
        ename=ename,
        evalue=evalue,
        traceback=lines,
    )


def _count_of(nb: NotebookNode, index: int) -> int | None:
    return nb.cells[index].get("execution_count") if 0 <= index < len(nb.cells) else None


def _saved(nb: NotebookNode, injected_at: int | None, request: ExecutionRequest) -> bytes:
    if injected_at is not None and not request.save_injected_parameters:
        nb = remove_injected_cell(nb, injected_at)
    return write_notebook(nb)
