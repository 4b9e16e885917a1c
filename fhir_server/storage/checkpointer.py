"""Background WAL checkpoints for SQLite.

A checkpoint copies the pages committed to the WAL back into the database file and syncs it.
Left to SQLite, it runs inside the commit that pushes the WAL past ``wal_autocheckpoint``
pages, while that commit still holds the write lock every writer of every process waits for,
and all writes stop meanwhile. Here a thread of each server process runs
PASSIVE checkpoints on a connection of its own shortly after that process commits: they do not
take the write lock, so writers go on meanwhile. The writers' own automatic checkpoint stays as
the backstop; it then finds nearly every page already copied, and it is the one that lets the
next writer start the WAL again from its beginning (which needs every frame copied, at a moment
when no writer is adding new ones).
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

# At most one checkpoint pass per this many seconds (each pass syncs the database file).
INTERVAL = 0.05


class Checkpointer:
    """A daemon thread checkpointing the SQLite database at ``path`` after ``written()`` calls
    (started by the first one: a process that never writes has no such thread)."""

    def __init__(self, path: str, interval: float = INTERVAL):
        self.path = path
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def written(self) -> None:
        """A write transaction committed: checkpoint soon."""
        if self._thread is None:
            with self._starting:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)
                    self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """Stop the thread (after the pass it is running, if any)."""
        with self._starting:
            self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA wal_autocheckpoint=0")  # this connection never writes anyway
            while True:
                self._wake.wait()
                if self._stop.is_set():
                    return
                self._wake.clear()
                try:
                    # fetchall: the statement must finish, or it keeps a read lock on the WAL
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or locked: the next pass catches up
                    log.debug("background checkpoint of %s skipped: %s", self.path, exc)
                if self._stop.wait(self.interval):
                    return
        finally:
            conn.close()
