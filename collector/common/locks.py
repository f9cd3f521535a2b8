"""One file lock for every program: an exclusive ``flock`` (non-blocking by default).

It keeps two collectors off one stream, a manual run of secmaster, QA, S3 sync or a periodic
job off the scheduled one, and two processes off the alert state at once. The holder's pid is
written into the file, so the loser can say who holds it. The kernel releases the lock when
the process dies, even on kill -9.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockBusyError(Exception):
    """The lock is held by another process (``holder`` is its pid, or "?")."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"lock {path} is held by pid {holder}")
        self.path = path
        self.holder = holder


@contextmanager
def hold_lock(path: Path, *, wait: bool = False, mode: int = 0o644) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``: at once or LockBusyError (the default), or
    waiting for the holder (``wait=True``, for short critical sections such as the alert
    state shared by processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusyError(path, _holder(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock


def _holder(fd: int) -> str:
    """The pid in a held lock file. The holder writes it just after taking the lock, so an
    empty file means "about to be written": look again for a moment before saying "?"."""
    for _ in range(20):
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if holder:
            return holder
        time.sleep(0.005)
    return "?"
