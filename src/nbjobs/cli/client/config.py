"""The stored login: one JSON file the user alone can read, under the user's config directory.

``$XDG_CONFIG_HOME/nbjobs/login.json`` (else ``~/.config/nbjobs/login.json``), the file 0600 and its
directory 0700, written whole to a temporary file and renamed, so a reader never sees half of it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "login.json"


@dataclass(frozen=True)
class Login:
    """Where the server is, who signed in, and how to trust its certificate."""

    url: str  # the server's base, https://host:port/<context>
    token: str
    username: str = ""
    expires: int = 0  # epoch ms, 0 when unknown
    ca_cert: str = ""  # absolute path of the CA bundle to verify the server with, "" for the system's
    insecure: bool = False  # no certificate verification at all


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/nbjobs``, else ``~/.config/nbjobs`` (a relative XDG value is ignored, per spec)."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "nbjobs"


def login_path(environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ) / FILE_NAME


def load(path: Path) -> Login | None:
    """The stored login, or None when there is none (or it is unreadable: sign in again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Login(
            url=str(data["url"]),
            token=str(data["token"]),
            username=str(data.get("username", "")),
            expires=int(data.get("expires", 0)),
            ca_cert=str(data.get("ca_cert", "")),
            insecure=bool(data.get("insecure", False)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(path: Path, login: Login) -> None:
    """Write ``login`` readable by the user only; the directory is made (or tightened to) 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(asdict(login), out, indent=2)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def remove(path: Path) -> bool:
    """Forget the stored login; False when there was none."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
