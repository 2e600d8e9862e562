"""One writer per index: a lock file next to the catalog, held while an update runs.

SQLite already serialises each write, but two `lookalike index` runs on one folder would both diff against the
same catalog and both embed the same new files (148 of 300 images twice, measured). The lock makes the second
run wait (saying who holds it) and then diff against what the first committed, so it embeds nothing twice.
An OS lock (`flock`) is released by the kernel when its holder dies, even by `kill -9`: no stale lock files.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lookalike.errors import LookalikeError


class IndexBusyError(LookalikeError):
    """Another process is writing this index."""


def lock_path(db_file: Path) -> Path:
    return db_file.with_name(db_file.name + ".lock")


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("utf-8", "replace").strip() or "another process"


@contextmanager
def writer_lock(db_file: Path, wait: bool = True,
                on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the index's writer lock; if taken, call `on_wait(holder)` then wait (or raise IndexBusyError)."""
    import fcntl

    path = lock_path(db_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise IndexBusyError(f"{db_file} is being updated by {holder}; wait for it to finish "
                                     "(or stop that process) and run this again") from None
            if on_wait:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:3]))
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} ({command})".encode("utf-8", "replace"))
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
