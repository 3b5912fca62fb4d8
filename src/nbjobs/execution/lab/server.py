"""Start and stop one user's Jupyter server (JupyterLab from its own environment).

The server runs JupyterLab's Python (``lab_python``: an environment of its own, so nbjobs' runners never
import JupyterLab's dependencies); its kernels run the runtime's interpreter, through a kernelspec
written into the container's own data directory. It binds ``host`` on a port the OS picks (read back
from its log), answers only with its random token (in a config file only its user can read, never on
the command line or in the environment), lives in its own session (one process group to stop), and
serves under ``/<context>/notebooks/<containerId>/`` so that the proxy passes paths through unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from nbjobs.execution.lab.client import LabClient, LabUnreachable
from nbjobs.execution.processes import kill_process_tree

_URL = re.compile(r"https?://[^\s/]+:(\d+)/")
LOG_NAME = "server.log"


class LabStartFailed(Exception):
    """The Jupyter server exited or did not answer in time; the message is its last log line."""


def lab_python(configured: str) -> str:
    """The Python that has JupyterLab: the setting, else ``.venv-lab`` beside the server's environment
    (what ``make serve`` creates), else the server's own interpreter."""
    if configured:
        return configured
    beside = Path(sys.prefix).parent / ".venv-lab" / "bin" / "python"
    return str(beside) if beside.exists() else sys.executable


@dataclass(frozen=True)
class LabLaunch:
    container_id: str
    base_url: str  # "/<context>/notebooks/<containerId>/"
    workspace: Path  # the user's files; the server's root directory
    state_dir: Path  # this container's Jupyter data, runtime and config directories, and its log
    kernel_argv: tuple[str, ...]  # the runtime's kernel command, with "{connection_file}"
    python: str  # JupyterLab's interpreter
    host: str
    token: str
    env: dict[str, str] = field(default_factory=dict)
    os_user: str = ""  # run the server (and so its kernels and terminals) as this user; "" = ours


class LabProcess:
    """A started Jupyter server process (a child of this one)."""

    def __init__(self, launch: LabLaunch, proc: subprocess.Popen[bytes]) -> None:
        self.launch = launch
        self.proc = proc
        self.pid = proc.pid
        self.started = psutil.Process(proc.pid).create_time()
        self.address = ""

    @classmethod
    def start(cls, launch: LabLaunch) -> LabProcess:
        _prepare_dirs(launch)
        data, config, runtime = (launch.state_dir / d for d in ("data", "config", "runtime"))
        env = {
            **launch.env,
            "JUPYTER_DATA_DIR": str(data),
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_RUNTIME_DIR": str(runtime),
            "JUPYTER_CONFIG_PATH": str(config),
            "JUPYTER_PATH": str(data),
            "JUPYTER_PLATFORM_DIRS": "1",
            # the user's JupyterLab settings and layouts, in their workspace (hidden: .jupyter)
            "JUPYTERLAB_SETTINGS_DIR": str(lab_settings_dir(launch.workspace)),
            "JUPYTERLAB_WORKSPACES_DIR": str(launch.workspace / ".jupyter" / "lab" / "workspaces"),
        }
        argv = [
            launch.python,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--config={config / 'nbjobs_config.json'}",
        ]
        if os.geteuid() == 0 and not launch.os_user:
            argv.append("--allow-root")
        uid = gid = None
        if launch.os_user:
            account = pwd.getpwnam(launch.os_user)
            uid, gid = account.pw_uid, account.pw_gid
            env["HOME"] = str(launch.workspace)
            env["USER"] = env["LOGNAME"] = launch.os_user
        log = open(launch.state_dir / LOG_NAME, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                argv,
                cwd=launch.workspace,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
            )
        finally:
            log.close()
        return cls(launch, proc)

    def wait_ready(self, timeout: float, *, progress: Callable[[float], None] = lambda elapsed: None) -> str:
        """Wait until the server answers its status with our token; returns its address. Raises
        LabStartFailed (with its last log line) when it exits or does not answer within ``timeout``."""
        started = time.monotonic()
        port = 0
        while True:
            elapsed = time.monotonic() - started
            if self.proc.poll() is not None:
                raise LabStartFailed(last_line(self.launch.state_dir, self.proc.returncode))
            if elapsed > timeout:
                self.stop(grace=2.0)
                raise LabStartFailed(
                    f"The notebook server did not answer within {timeout:.0f} s. "
                    + last_line(self.launch.state_dir, None)
                )
            if not port:
                port = _port_in_log(self.launch.state_dir)
            if port:
                address = f"http://{self.launch.host}:{port}"
                client = LabClient(address, self.launch.base_url, self.launch.token, timeout=5.0)
                with contextlib.suppress(LabUnreachable):
                    client.status()
                    self.address = address
                    return address
            progress(elapsed)
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM (Jupyter shuts its kernels down), then SIGKILL of whatever is left of the tree."""
        return stop_process(self.pid, self.started, grace=grace, popen=self.proc)


def stop_process(
    pid: int, started: float, *, grace: float = 10.0, popen: subprocess.Popen[bytes] | None = None
) -> int | None:
    """Stop a Jupyter server's process tree, ours or adopted after a restart (then known by pid and
    start time, so a reused pid is never signalled)."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) > 0.5:
            return None  # the pid now belongs to another process: ours is gone
        children = proc.children(recursive=True)
    except psutil.Error:
        return popen.poll() if popen is not None else None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            break
        if popen is None and not _running(proc):
            break
        time.sleep(0.05)
    kill_process_tree(pid)
    for child in children:  # kernels that left the process group
        with contextlib.suppress(psutil.Error):
            child.kill()
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return popen.wait(timeout=5.0)
    return None


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_alive(pid: int, started: float) -> bool:
    """True when ``pid`` is still the process that started at ``started``."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) <= 0.5 and _running(proc)
    except psutil.Error:
        return False


def process_usage(pid: int, started: float) -> dict[str, Any]:
    """Memory (RSS, bytes) and CPU time (s) of a server's whole process tree, its kernels included."""
    try:
        root = psutil.Process(pid)
        if abs(root.create_time() - started) > 0.5:
            return {}
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    rss = cpu = 0.0
    for proc in tree:
        try:
            rss += proc.memory_info().rss
            times = proc.cpu_times()
            cpu += times.user + times.system
        except psutil.Error:
            continue
    return {"memoryUsageBytes": int(rss), "cpuSeconds": round(cpu, 2), "processes": len(tree)}


def lab_settings_dir(workspace: Path) -> Path:
    return workspace / ".jupyter" / "lab" / "user-settings"


def owned_by_a_live_process(pid: int) -> bool:
    """True while the process that started this server still runs it (its parent is alive and is not
    init or a subreaper that adopted it after a crash): then it is not ours to adopt."""
    try:
        parent = psutil.Process(pid).parent()
        if parent is None or parent.pid == 1:
            return False
        return any("nbjobs" in part for part in parent.cmdline())
    except psutil.Error:
        return False


def last_line(state_dir: Path, returncode: int | None) -> str:
    """The server log's last meaningful line (what a failed start reports)."""
    try:
        with open(state_dir / LOG_NAME, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    line = lines[-1] if lines else "(it wrote nothing)"
    prefix = f"The notebook server exited with code {returncode}: " if returncode is not None else ""
    return prefix + line[:500]


def tail(state_dir: Path, lines: int) -> list[str]:
    try:
        text = (state_dir / LOG_NAME).read_text(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:] if lines > 0 else []


def _port_in_log(state_dir: Path) -> int:
    try:
        text = (state_dir / LOG_NAME).read_text(errors="replace")
    except OSError:
        return 0
    found = _URL.search(text)
    return int(found.group(1)) if found else 0


def _prepare_dirs(launch: LabLaunch) -> None:
    state = launch.state_dir
    for sub in ("data/kernels/python3", "config", "runtime"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    launch.workspace.mkdir(parents=True, exist_ok=True)
    kernel = {
        "argv": list(launch.kernel_argv),
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": True},
    }
    (state / "data/kernels/python3/kernel.json").write_text(json.dumps(kernel))
    config = {
        "ServerApp": {
            "ip": launch.host,
            "port": 0,
            "port_retries": 0,
            "base_url": launch.base_url,
            "root_dir": str(launch.workspace),
            "open_browser": False,
            "allow_remote_access": True,  # the Host header is the proxy's choice, not a browser's
        },
        "IdentityProvider": {"token": launch.token},
        "KernelSpecManager": {"ensure_native_kernel": False},
        "MappingKernelManager": {"default_kernel_name": "python3"},
        "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"},
    }
    # JupyterLab's own defaults, set once per user (the settings live in the workspace, kept across
    # servers): no news prompt, no update check (nbjobs' JupyterLab is upgraded with nbjobs)
    user_settings = lab_settings_dir(launch.workspace) / "@jupyterlab" / "apputils-extension"
    user_settings.mkdir(parents=True, exist_ok=True)
    notification = user_settings / "notification.jupyterlab-settings"
    if not notification.exists():
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    path = state / "config" / "nbjobs_config.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    if launch.os_user:
        account = pwd.getpwnam(launch.os_user)
        for root in (state, launch.workspace):
            for dirpath, _dirs, files in os.walk(root):
                os.chown(dirpath, account.pw_uid, account.pw_gid)
                for name in files:
                    os.chown(os.path.join(dirpath, name), account.pw_uid, account.pw_gid)
