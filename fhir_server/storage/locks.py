"""Locks that hold across every process using one database.

``FileLock``: an exclusive ``flock`` on a file beside a SQLite database (its writers share one
host). ``Database.exclusive(name)`` holds a named lock: on SQLite a ``FileLock`` on a file per
name, on PostgreSQL a session advisory lock (the processes may be on different hosts). Every
holder has its own file description or session, so threads of one process exclude each other
as well as other processes. ``transaction_lock`` holds a name until a write transaction ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine

__all__ = ["FileLock", "file_lock", "advisory_lock", "lock_key", "transaction_lock"]


class FileLock:
    """An exclusive ``flock`` on ``path`` (created if missing); the kernel queues the waiters."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release and let the file go (closing the descriptor drops its lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def file_lock(directory: Path, name: str) -> Iterator[None]:
    """Hold ``name`` through a lock file in ``directory`` (made on first use)."""
    directory.mkdir(exist_ok=True)
    lock = FileLock(directory / f"{lock_key(name) & 0xFFFFFFFFFFFFFFFF:016x}.lock")
    lock.acquire()
    try:
        yield
    finally:
        lock.close()


@contextlib.contextmanager
def advisory_lock(engine: Engine, name: str) -> Iterator[None]:
    """Hold ``name`` as a PostgreSQL session advisory lock, on a connection kept for the block."""
    key = lock_key(name)
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_advisory_lock(%(key)s)", {"key": key})
        conn.commit()
        try:
            yield
        finally:
            conn.exec_driver_sql("SELECT pg_advisory_unlock(%(key)s)", {"key": key})
            conn.commit()


def transaction_lock(conn: Connection, name: str) -> None:
    """Hold ``name`` until the write transaction of ``conn`` ends: transactions that take the
    same name run that part one after the other. On PostgreSQL a transaction advisory lock
    (its transactions run side by side); SQLite needs none, its one writer already serializes."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(key)s)", {"key": lock_key(name)})
