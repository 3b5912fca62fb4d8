"""Start a kernel as another, unprivileged OS user: ``python -m nbjobs.execution.dropuser USER -- CMD…``.

Run (as root) in place of the kernel command when ``NBJOBS_KERNEL_USER`` is set. The kernel's
connection file lives where only the server's user can read it, so this copies it into the kernel's
private socket directory, hands that directory to USER, drops to USER (groups, gid, uid — in that
order, irreversibly) and execs the kernel with the copy. Kept import-light: it runs on every kernel start.
"""

from __future__ import annotations

import json
import os
import pwd
import sys


def hand_over_connection_file(path: str, uid: int, gid: int | None) -> str:
    """A copy of the connection file ``path`` that the kernel's user owns, in the kernel's private
    socket directory (handed to that user too); returns the copy's path. Also used by a forked kernel
    (``fork/child.py``) before it drops to the user."""
    with open(path, "rb") as source:
        raw = source.read()
    sockets = os.path.dirname(json.loads(raw)["ip"])  # IPC transport: the socket path prefix
    copy = os.path.join(sockets, "connection.json")
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, raw)
    os.close(fd)
    for item in (sockets, copy):
        os.chown(item, uid, gid if gid is not None else -1)
    return copy


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m nbjobs.execution.dropuser USER -- CMD...", file=sys.stderr)
        return 2
    account = pwd.getpwnam(argv[0])
    cmd = argv[2:]
    at = cmd.index("-f") + 1
    copy = hand_over_connection_file(cmd[at], account.pw_uid, account.pw_gid)
    sockets = os.path.dirname(copy)
    cmd[at] = copy
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    os.environ.update(HOME=sockets, USER=account.pw_name, LOGNAME=account.pw_name)
    os.execvp(cmd[0], cmd)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
