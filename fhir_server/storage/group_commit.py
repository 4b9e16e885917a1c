"""Group commit for SQLite: concurrent writers of one process share one transaction.

SQLite allows one writer at a time, and a commit costs writing every page the transaction
touched (a single create touches some twenty index pages). When writers queue up, each takes its
turn on one open transaction, inside a SAVEPOINT of its own; the writer that finds nobody
waiting after it commits for all of them. A writer whose work fails rolls back to its savepoint
only, so the others are unaffected. Nobody returns before the shared commit has succeeded,
so a write that was acknowledged is a write that was committed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from sqlalchemy import Connection, Engine

from fhir_server.storage.locks import FileLock

# A batch commits at the latest after this many writers, to bound the wait of the first.
MAX_WRITERS = 64


class _Batch:
    def __init__(self, conn: Connection):
        self.conn = conn
        self.writers = 0
        self.succeeded: list[dict] = []  # the transaction states of the writers that succeeded
        self.committed = threading.Event()
        self.error: BaseException | None = None


class GroupCommit:
    def __init__(self, engine: Engine, state_key: str, finish: Callable[[Connection, list[dict]], None],
                 lock_path: str, committed: Callable[[], None] = lambda: None):
        self.engine = engine
        self.finish = finish  # runs the batch's shared work just before its commit
        self.committed = committed  # told after each commit, once the write lock is released
        self.state_key = state_key  # where a writer's transaction state lives in conn.info
        # Server processes sharing the file take turns through a lock the kernel queues,
        # rather than SQLite's busy-wait (which sleeps and retries).
        self._file_lock = FileLock(lock_path)
        self._turn = threading.Lock()  # one writer uses the shared connection at a time
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._batch: _Batch | None = None
        # one connection serves every batch in turn: no pool checkout per commit
        self._conn: Connection | None = None

    @contextlib.contextmanager
    def writer(self) -> Iterator[Connection]:
        with self._waiting_lock:
            self._waiting += 1
        self._turn.acquire()
        with self._waiting_lock:
            self._waiting -= 1
        try:
            batch = self._batch or self._open()
        except BaseException:
            self._turn.release()
            raise
        batch.writers += 1
        conn = batch.conn
        conn.info[self.state_key] = state = {}
        failure: BaseException | None = None
        # savepoints on the driver's connection: SQLAlchemy's per-statement work is not needed
        driver = conn.connection.driver_connection
        driver.execute("SAVEPOINT writer")
        try:
            yield conn
            for callback in state.get("before_commit", ()):
                callback()
        except BaseException as exc:  # noqa: BLE001 - raised again below, after our turn
            failure = exc
            driver.execute("ROLLBACK TO writer")
        else:
            batch.succeeded.append(state)
        finally:
            driver.execute("RELEASE writer")
            conn.info.pop(self.state_key, None)
            self._commit_if_last(batch)
            self._turn.release()
        if failure is not None:
            raise failure
        batch.committed.wait()
        if batch.error is not None:
            raise batch.error
        for callback in state.get("after_commit", ()):
            callback()

    def _open(self) -> _Batch:
        self._file_lock.acquire()
        try:
            if self._conn is None:
                self._conn = self.engine.connect()
            self._conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self._discard_connection()
            self._file_lock.release()
            raise
        self._batch = _Batch(self._conn)
        return self._batch

    def _commit_if_last(self, batch: _Batch) -> None:
        with self._waiting_lock:
            others_waiting = self._waiting > 0
        if others_waiting and batch.writers < MAX_WRITERS:
            return  # the next writer in line continues the transaction
        self._batch = None
        try:
            self.finish(batch.conn, batch.succeeded)
            batch.conn.commit()
        except BaseException as exc:  # noqa: BLE001 - every writer of the batch sees it
            batch.error = exc
            with contextlib.suppress(Exception):  # already failing; the first error is reported
                batch.conn.rollback()
            self._discard_connection()
        finally:
            self._file_lock.release()
            batch.committed.set()
        if batch.error is None:
            self.committed()

    def _discard_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Give the writers' connection back (the engine is being disposed)."""
        with self._turn:
            self._discard_connection()
