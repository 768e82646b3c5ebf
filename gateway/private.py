"""Files that hold the gateway's data (the database, the audit mirror) are created readable by their owner only.

Mode 0600 whatever the umask (022 would make them world-readable). SQLite gives its -wal and -shm files the
main file's mode, so creating the main file 0600 before SQLite opens it covers all three. The same rule, that
others have no access, is what a secret the operator provides is held to (`open_to_others`: the TLS key).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MODE = 0o600


def create(path: Path) -> None:
    """Create `path` empty with mode 0600 if it is missing; take access for others away from one that exists.

    An existing file keeps any group access an operator granted on purpose (a log shipper's group, say); files
    an earlier version made world-readable lose that. Only the owner may change a mode: others leave it be.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, MODE)
    try:
        _no_others(fd)
    finally:
        os.close(fd)


def tighten(path: Path) -> None:
    """`create`'s rule for a file that may exist (SQLite's -wal and -shm), without creating it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        _no_others(fd)
    finally:
        os.close(fd)


def append_line(path: Path, line: str) -> None:
    """Append one line, creating the file 0600 (again, after a log rotation moved it away)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, MODE)
    with os.fdopen(fd, "a", encoding="utf-8") as file:
        file.write(line + "\n")


def open_to_others(status: os.stat_result) -> bool:
    """Whether users other than the file's owner and its group have any access to it."""
    return bool(status.st_mode & stat.S_IRWXO)


def _no_others(fd: int) -> None:
    status = os.fstat(fd)
    if open_to_others(status) and status.st_uid == os.geteuid():
        os.fchmod(fd, stat.S_IMODE(status.st_mode) & ~stat.S_IRWXO)
