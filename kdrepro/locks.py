"""Locks between processes, on one machine or on several that share a file system: `flock` on a lock file.

The operating system (or the file server) releases a flock when its holder ends, however it ends, so a killed
worker never blocks the next one; the file holds the holder's pid and host, for messages only. A lock file is
never deleted: a process that locked a deleted file would not exclude one that creates a new file of that name.
"""

from __future__ import annotations

import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


class Locked(Exception):
    """The lock is held by another process (or another open file of this one); `holder` says who."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is locked by {holder}")
        self.holder = holder


@contextmanager
def held(path: Path, wait: bool = True) -> Iterator[None]:
    """The lock at `path` held meanwhile: waited for while another process holds it, or, with `wait=False`,
    `Locked` raised at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Locked(path, _holder(lock)) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()} {socket.gethostname()}")
        lock.flush()
        yield


def holder(path: Path) -> str | None:
    """Who holds the lock at `path` ('pid 12 on node3'), or None when no one does."""
    try:
        lock = open(path)
    except FileNotFoundError:
        return None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(lock)
        return None


def _holder(lock: IO[str]) -> str:
    lock.seek(0)
    pid, _, host = lock.read().strip().partition(" ")
    return f"pid {pid or 'unknown'}" + (f" on {host}" if host else "")
