"""Kernels forked from a pre-imported template (issue 15, foundation): each as fresh as a new process.

Every isolation test here would fail with a shared or naively forked kernel: a kernel reused between
jobs keeps globals and ``sys.modules``; a fork without reseeding repeats the template's random
numbers; a fork without closing fds keeps the template's files and pipes; a fork with threads alive or
a ZMQ context inherited hangs or aborts.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from nbjobs.execution.fork.child import ForkSpec
from nbjobs.execution.fork.client import Template, TemplateError
from nbjobs.execution.fork.templates import Templates
from nbjobs.execution.kernels import StartingKernel, StartMethod, kernel_pid
from nbjobs.execution.limits import CgroupV1Backend, CgroupV2Backend, detect_backend
from nbjobs.execution.processes import kill_process_tree
from tests.waiting import GENEROUS, eventually

pytestmark = pytest.mark.kernel

try:
    import numpy  # noqa: F401

    HAVE_NUMPY = True
except ImportError:
    HAVE_NUMPY = False

PRELOADS = {
    # holds a file open in the template: no forked kernel may have it
    "nbjobs_fork_holds_file": """
        import os
        HELD = open(os.path.join(os.path.dirname(__file__), "held-by-template.txt"), "w")
        HELD.write("buffered in the template, never to be flushed by a kernel")
        COUNTER = 0
    """,
    "nbjobs_fork_starts_thread": """
        import threading, time
        threading.Thread(target=time.sleep, args=(3600,), name="preload-worker", daemon=True).start()
    """,
    "nbjobs_fork_makes_zmq_context": """
        import zmq
        CONTEXT = zmq.Context()
    """,
    "nbjobs_fork_broken": """
        raise ImportError("nbjobs_fork_broken needs a library that is not installed")
    """,
}


@pytest.fixture(scope="module")
def preload_dir(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("preload")
    for name, source in PRELOADS.items():
        (where / f"{name}.py").write_text(textwrap.dedent(source))
    return where


def template_env(preload_dir: Path) -> dict[str, str]:
    paths = [str(preload_dir), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


@pytest.fixture(scope="module")
def template(preload_dir) -> Iterator[Template]:
    preload = ["nbjobs_fork_holds_file", *(["numpy"] if HAVE_NUMPY else [])]
    started = Template.start(
        preload,
        env=template_env(preload_dir),
        python_options=["-W", "error"],  # a warning in its imports or at a fork would fail the template
        log_path=str(preload_dir / "template.log"),
    )
    yield started
    started.stop()


class Forked:
    """A kernel forked for a test, a client on its connection file, and its clean-up."""

    def __init__(
        self, template: Template, parent_pid: int | None = None, cwd_override: str = "", **spec: object
    ) -> None:
        self.sockets = cwd_override or tempfile.mkdtemp(prefix="nbjobs-k-")
        self.connection_file, _ = write_connection_file(
            os.path.join(self.sockets, "connection.json"), transport="ipc", ip=os.path.join(self.sockets, "k")
        )
        self.log = os.path.join(self.sockets, "kernel.log")
        self.pid = template.fork(
            ForkSpec(
                connection_file=self.connection_file,
                cwd=self.sockets,
                env={**os.environ, "NBJOBS_FORK_MARK": "this job"},
                log_path=self.log,
                parent_pid=os.getpid() if parent_pid is None else parent_pid,
                **spec,  # type: ignore[arg-type]
            )
        )
        self.kc = client(self.connection_file)

    def run(self, code: str) -> str:
        return run(self.kc, code)

    def close(self) -> None:
        self.kc.stop_channels()
        kill_process_tree(self.pid)
        eventually(lambda: gone(self.pid), what=f"forked kernel {self.pid} to be reaped")
        shutil.rmtree(self.sockets, ignore_errors=True)


@pytest.fixture
def fork(template) -> Iterator[Callable[..., Forked]]:
    made: list[Forked] = []

    def make(**spec: object) -> Forked:
        made.append(Forked(template, **spec))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for kernel in made:
        kernel.close()


def client(connection_file: str, ready: bool = True) -> BlockingKernelClient:
    """A client on the kernel; ``ready``: wait until IOPub is subscribed too (a kernel still starting
    publishes before our subscription lands, and ``execute_interactive`` would wait for lost output)."""
    kc = BlockingKernelClient(connection_file=connection_file)
    kc.load_connection_file()
    kc.start_channels()
    if ready:
        kc.wait_for_ready(timeout=GENEROUS * 2)
    return kc


def run(kc: BlockingKernelClient, code: str) -> str:
    """Run ``code``; what it printed. Fails on an error in the cell."""
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=GENEROUS * 2, output_hook=hook, allow_stdin=False)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out).strip()


def gone(pid: int) -> bool:
    """Exited *and reaped* (a zombie left by the template would still count as there)."""
    return not psutil.pid_exists(pid)


def test_a_forked_kernel_runs_code_and_is_a_child_of_the_template(template, fork):
    kernel = fork()
    assert kernel.run("print(6 * 7)") == "42"
    process = psutil.Process(kernel.pid)
    assert process.ppid() == template.pid
    assert os.getpgid(kernel.pid) == kernel.pid and os.getsid(kernel.pid) == kernel.pid  # its own session
    assert kernel.run("import os; print(os.getcwd())") == os.path.realpath(kernel.sockets)
    env = json.loads(kernel.run("import os, json; print(json.dumps(dict(os.environ)))"))
    # the request's environment (ipykernel adds its own, CLICOLOR, MPLBACKEND...), not the template's
    assert env["NBJOBS_FORK_MARK"] == "this job" and env.get("PYTHONPATH") == os.environ.get("PYTHONPATH")
    assert all(env[k] == v for k, v in os.environ.items() if k != "TERM")  # TERM: ipykernel's
    # nor its interpreter options: the template runs with -W error, a stock kernel does not
    filters = kernel.run("import warnings; print(warnings.filters[0][0], len(warnings.filters))")
    assert filters != "error 1" and not filters.startswith("error")


def test_globals_and_sys_modules_of_one_kernel_are_not_seen_by_the_next(fork):
    first = fork()
    first.run(
        "leaked = 1\n"
        "import sys, types, json, nbjobs_fork_holds_file as held\n"
        "sys.modules['nbjobs_injected'] = types.ModuleType('nbjobs_injected')\n"
        "held.COUNTER += 1\n"
        "json.nbjobs_mark = True\n"
    )
    second = fork()
    seen = second.run(
        "import sys, json, nbjobs_fork_holds_file as held\n"
        "print('leaked' in globals(), 'nbjobs_injected' in sys.modules, held.COUNTER,"
        " hasattr(json, 'nbjobs_mark'))"
    )
    assert seen == "False False 0 False"
    assert first.run("print(held.COUNTER)") == "1"  # the first still has its own state


def test_random_numbers_differ_between_kernels_of_one_template(fork):
    code = "import random, uuid; print(random.random(), uuid.uuid1().clock_seq)"
    if HAVE_NUMPY:
        code = "import numpy, sys; print('numpy' in sys.modules and numpy.random.random())\n" + code
    first, second = fork().run(code), fork().run(code)
    assert first != second
    if HAVE_NUMPY:  # numpy was preloaded: its global RandomState came through the fork
        assert first.splitlines()[0] != second.splitlines()[0] and first.splitlines()[0] != "False"
    for a, b in zip(first.split(), second.split(), strict=True):
        assert a != b


def test_no_fd_of_the_template_is_open_in_a_kernel(template, fork, preload_dir):
    held = str(preload_dir / "held-by-template.txt")
    theirs = {os.readlink(f"/proc/{template.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{template.pid}/fd")}
    assert held in theirs  # the template holds the file and its stdin/stdout pipes...
    pipes = {target for target in theirs if target.startswith("pipe:")}
    assert pipes
    kernel = fork()
    fds = json.loads(
        kernel.run("import os, json; print(json.dumps(os.listdir('/proc/self/fd')))")
    )  # fmt: skip
    ours = {
        os.readlink(f"/proc/{kernel.pid}/fd/{fd}")
        for fd in fds
        if os.path.exists(f"/proc/{kernel.pid}/fd/{fd}")
    }
    assert held not in ours and not pipes & ours  # ...the kernel none of them
    assert os.readlink(f"/proc/{kernel.pid}/fd/0") == os.devnull
    assert os.readlink(f"/proc/{kernel.pid}/fd/2") == kernel.log
    kernel.close()
    # The template's buffered write was not flushed by the kernel when it closed the inherited file.
    assert (preload_dir / "held-by-template.txt").read_text() == ""


THREADS_AND_PATH = (
    "import threading, sys, json\n"
    "print(json.dumps([sorted(t.name for t in threading.enumerate()), sys.path]))"
)


def test_a_kernel_has_the_threads_and_path_of_a_stock_kernel_and_no_other(fork, tmp_path):
    forked_threads, forked_path = json.loads(fork().run(THREADS_AND_PATH))
    starting = StartingKernel.launch("python3", str(tmp_path))
    warm = starting.ready(timeout=GENEROUS * 2)
    try:
        kc = client(warm.km.connection_file)
        stock_threads, stock_path = json.loads(run(kc, THREADS_AND_PATH))
        kc.stop_channels()
    finally:
        warm.discard()
    assert forked_threads == stock_threads
    # the template's PYTHONPATH (the preload dir) is not the job's: it is not on the kernel's path
    assert forked_path == stock_path


@pytest.mark.skipif(os.geteuid() != 0, reason="switching the kernel's user needs root")
def test_a_kernel_runs_as_the_requested_user(template):
    nobody = pwd.getpwnam("nobody")
    sockets = tempfile.mkdtemp(prefix="nbjobs-k-")
    os.chmod(sockets, 0o755)  # as the runner's socket dir is handed over
    kernel = Forked(template, uid=nobody.pw_uid, gid=nobody.pw_gid, cwd_override=sockets)
    try:
        ids = kernel.run("import os; print(os.getuid(), os.getgid(), os.getgroups())")
        assert ids == f"{nobody.pw_uid} {nobody.pw_gid} []"
        assert os.stat(kernel.log).st_uid == nobody.pw_uid  # the log was opened as the job's user
    finally:
        kernel.close()
        shutil.rmtree(sockets, ignore_errors=True)


def test_a_kernel_joins_its_cgroup_before_it_runs(template):
    backend = detect_backend()
    if backend.name == "rlimit":
        pytest.skip("no writable cgroup hierarchy here")
    group = f"fork-test-{os.getpid()}"
    if isinstance(backend, CgroupV2Backend):
        backend._prepare()
        dirs = [backend.base / group]
    else:
        assert isinstance(backend, CgroupV1Backend)
        dirs = [backend.memory / group, backend.cpu / group]
    for path in dirs:
        path.mkdir(parents=True, exist_ok=True)
    kernel = Forked(template, cgroups=tuple(str(d) for d in dirs))
    try:
        assert kernel.run("print('in')") == "in"
        assert all(str(kernel.pid) in (d / "cgroup.procs").read_text().split() for d in dirs)
        # and what the kernel forks stays in it
        child = kernel.run("import subprocess; p = subprocess.Popen(['sleep', '600']); print(p.pid)")
        assert all(child in (d / "cgroup.procs").read_text().split() for d in dirs)
    finally:
        backend.release(group)  # kills everything in the group, kernel included
        eventually(lambda: gone(kernel.pid), what="the kernel to be killed with its cgroup")
        kernel.close()


def test_a_kernel_dies_with_its_runner(fork):
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        kernel = fork(parent_pid=runner.pid)
        assert kernel.run("print('up')") == "up"
        runner.kill()
        runner.wait()
        eventually(lambda: gone(kernel.pid), what="the kernel to exit after its runner")
    finally:
        runner.kill()
        runner.wait()


def test_a_kernel_for_a_runner_already_gone_is_refused(template, tmp_path):
    runner = subprocess.Popen([sys.executable, "-c", "pass"])
    runner.wait()
    spec = ForkSpec(str(tmp_path / "none.json"), str(tmp_path), {}, str(tmp_path / "log"), runner.pid)
    with pytest.raises(TemplateError, match="ProcessLookupError"):
        template.fork(spec)
    with pytest.raises(TemplateError, match="FileNotFoundError"):  # a set-up failure is the reply
        template.fork(
            ForkSpec(str(tmp_path / "none.json"), str(tmp_path / "nowhere"), {}, str(tmp_path / "l"))
        )
    assert template.alive()


@pytest.mark.parametrize("module", ["nbjobs_fork_broken", "nbjobs_no_such_module"])
def test_a_preload_that_does_not_import_is_a_clear_error(preload_dir, module):
    with pytest.raises(TemplateError) as err:
        Template.start(["json", module], env=template_env(preload_dir))
    assert err.value.kind == "import" and err.value.module == module
    assert module in err.value.reason


def test_a_preload_that_starts_a_thread_is_refused(preload_dir):
    with pytest.raises(TemplateError) as err:
        Template.start(["nbjobs_fork_starts_thread"], env=template_env(preload_dir))
    assert err.value.kind == "thread" and err.value.module == "nbjobs_fork_starts_thread"
    assert "nbjobs_fork_starts_thread" in err.value.reason and "preload-worker" in err.value.reason


def test_a_preload_that_creates_a_zmq_context_is_refused(preload_dir):
    with pytest.raises(TemplateError) as err:
        Template.start(["nbjobs_fork_makes_zmq_context"], env=template_env(preload_dir))
    assert err.value.kind == "zmq" and err.value.module == "nbjobs_fork_makes_zmq_context"
    assert "nbjobs_fork_makes_zmq_context" in err.value.reason and "ZMQ context" in err.value.reason


def test_a_killed_template_leaves_its_kernels_working_and_fails_the_next_fork(preload_dir):
    template = Template.start([], env=template_env(preload_dir), log_path=str(preload_dir / "t.log"))
    kernel = Forked(template)
    try:
        assert kernel.run("x = 1; print(x)") == "1"
        os.kill(template.pid, signal.SIGKILL)
        eventually(lambda: not template.alive(), what="the template to be gone")
        assert kernel.run("print(x + 1)") == "2"
        with pytest.raises(TemplateError, match="not running"):
            Forked(template)
    finally:
        kernel.kc.stop_channels()
        kill_process_tree(kernel.pid)  # re-parented: whoever reaps orphans here collects it
        template.stop()


def test_a_template_stopped_by_eof_exits_and_leaves_its_kernels(preload_dir):
    template = Template.start([], env=template_env(preload_dir), log_path=str(preload_dir / "t.log"))
    kernel = Forked(template)
    try:
        template.stop()
        assert template.proc.returncode == 0
        assert kernel.run("print('still here')") == "still here"
    finally:
        kernel.kc.stop_channels()
        kill_process_tree(kernel.pid)


def first_reply(start: Callable[[], tuple[str, int]], uss: list[int]) -> float:
    """Seconds from ``start()`` (a connection file and the kernel's pid) to the first execute_reply;
    the kernel's unique memory (USS) after it goes to ``uss``."""
    began = time.monotonic()
    connection_file, pid = start()
    kc = client(connection_file, ready=False)  # the shell reply is queued; IOPub is not needed here
    try:
        msg_id = kc.execute("pass", silent=True)
        while kc.get_shell_msg(timeout=GENEROUS * 2)["parent_header"].get("msg_id") != msg_id:
            pass
        took = time.monotonic() - began
        uss.append(psutil.Process(pid).memory_full_info().uss)
        return took
    finally:
        kc.stop_channels()


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms (min {min(values) * 1000:.0f}, max " + (
        f"{max(values) * 1000:.0f})"
    )


def test_measure_fork_against_stock_start(template, tmp_path):
    """Not a pass/fail figure: printed with ``-s`` (this 2-core machine is shared and busy)."""
    forked: list[float] = []
    replies: list[float] = []  # fork request -> the template's {"pid": N}
    stock: list[float] = []
    forked_uss: list[int] = []
    stock_uss: list[int] = []
    for _ in range(5):
        sockets = tempfile.mkdtemp(prefix="nbjobs-k-")
        pids: list[int] = []

        def start_forked(sockets: str = sockets, pids: list[int] = pids) -> tuple[str, int]:
            cf, _ = write_connection_file(
                os.path.join(sockets, "c.json"), transport="ipc", ip=os.path.join(sockets, "k")
            )
            asked = time.monotonic()
            spec = ForkSpec(cf, sockets, dict(os.environ), os.path.join(sockets, "log"), os.getpid())
            pids.append(template.fork(spec))
            replies.append(time.monotonic() - asked)
            return cf, pids[0]

        forked.append(first_reply(start_forked, forked_uss))
        kill_process_tree(pids[0])
        shutil.rmtree(sockets, ignore_errors=True)
        starting: list[StartingKernel] = []

        def start_stock(starting: list[StartingKernel] = starting) -> tuple[str, int]:
            starting.append(StartingKernel.launch("python3", str(tmp_path)))
            return str(starting[0].km.connection_file), kernel_pid(starting[0].km)

        stock.append(first_reply(start_stock, stock_uss))
        starting[0].ready(timeout=GENEROUS * 2).discard()
    ratio = statistics.median(stock) / statistics.median(forked)
    print(
        f"\nfork request -> first execute_reply: {ms(forked)}; of which the template's fork reply "
        f"{ms(replies)}; stock kernels.py start -> first execute_reply: {ms(stock)}; ratio {ratio:.1f}x; "
        f"USS per kernel after its first reply: forked {statistics.median(forked_uss) / 2**20:.1f} MiB, "
        f"stock {statistics.median(stock_uss) / 2**20:.1f} MiB; preload {template.preload}; n=5 each, "
        f"interleaved; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs (busy, shared machine)"
    )


# -- the owner's side: Templates keeps one per (interpreter, preload) healthy ---------------------------


@pytest.fixture
def templates(tmp_path, preload_dir, monkeypatch) -> Iterator[tuple[Templates, list[tuple[str, str, str]]]]:
    monkeypatch.setenv("PYTHONPATH", template_env(preload_dir)["PYTHONPATH"])
    reported: list[tuple[str, str, str]] = []
    owner = Templates(tmp_path, lambda *status: reported.append(status), check_seconds=0, ping_timeout=2)
    yield owner, reported
    owner.close()


def test_templates_rebuild_one_that_died_hung_or_whose_environment_changed(templates):
    owner, reported = templates
    first = owner.start_for("rt", sys.executable, (), "fork")
    assert first.fork_socket and not first.fallback and reported == [("rt", "fork", "")]
    (template,) = owner.running()
    assert owner.start_for("rt", sys.executable, (), "fork").fork_socket == first.fork_socket  # healthy: kept

    os.kill(template.pid, signal.SIGKILL)  # died
    eventually(lambda: not template.alive(), what="the template to die")
    second = owner.start_for("rt", sys.executable, (), "fork")
    (rebuilt,) = owner.running()
    assert rebuilt.pid != template.pid and second.fork_socket != first.fork_socket
    assert second.generation == first.generation  # same interpreter and packages: waiting kernels stay

    os.kill(rebuilt.pid, signal.SIGSTOP)  # hung: no answer to the owner's ping
    try:
        third = owner.start_for("rt", sys.executable, (), "fork")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(rebuilt.pid, signal.SIGCONT)
    assert not rebuilt.alive() and owner.running()[0].pid != rebuilt.pid and third.fork_socket

    site = owner.running()[0].site[0]  # a package installed or upgraded changes this directory
    stat = os.stat(site)
    try:
        os.utime(site, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        fourth = owner.start_for("rt", sys.executable, (), "fork")
    finally:
        os.utime(site, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fourth.generation != third.generation  # kernels of the old environment are not handed out
    assert all(status == ("rt", "fork", "") for status in reported)  # the runtime was never without one


def test_templates_refuse_a_bad_preload_once_and_report_it(templates):
    owner, reported = templates
    start = owner.start_for("rt", sys.executable, ("nbjobs_fork_broken",), "fork")
    assert not start.fork_socket and "nbjobs_fork_broken" in start.fallback
    assert reported[-1][:2] == ("rt", "fallback") and "failed to import" in reported[-1][2]
    again = owner.start_for("rt", sys.executable, ("nbjobs_fork_broken",), "fork")
    assert again.fallback == start.fallback and not owner.running()  # not retried: nothing changed
    # the runtime's preload edited: another template, and the runtime reports fork again
    fixed = owner.start_for("rt", sys.executable, ("json",), "fork")
    assert fixed.fork_socket and reported[-1] == ("rt", "fork", "")
    assert owner.start_for("rt", sys.executable, ("json",), "spawn") == StartMethod()
    assert reported[-1] == ("rt", "spawn", "")


def test_an_interpreter_that_cannot_run_a_template_is_a_fallback_with_its_reason(templates, tmp_path):
    owner, reported = templates
    start = owner.start_for("rt", str(tmp_path / "no-python"), (), "fork")
    assert not start.fork_socket and "could not start" in start.fallback
    assert reported[-1][:2] == ("rt", "fallback")


def test_pandas_can_be_preloaded(preload_dir):
    """pandas 3 loads pyarrow, whose jemalloc starts a background thread at import: the template turns
    it off (as it pins BLAS pools to one thread), so pandas can be preloaded and its kernels forked."""
    pytest.importorskip("pandas")
    template = Template.start(["pandas"], env=template_env(preload_dir), log_path=str(preload_dir / "p.log"))
    try:
        kernel = Forked(template)
        try:
            seen = kernel.run(
                "import sys; print('pandas' in sys.modules, __import__('pandas').Series([1, 2]).sum())"
            )
            assert seen == "True 3"
        finally:
            kernel.close()
    finally:
        template.stop()
