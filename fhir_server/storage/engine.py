"""Engine creation: the few places where SQLite and PostgreSQL differ at connection level.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (durable across a process crash, which is
what an ACKed HL7 message needs), and every write transaction starts with ``BEGIN IMMEDIATE``
so that two writers never deadlock upgrading a read lock. Within one process, writers queue
for their turn and share commits (``group_commit.py``), which is cheaper than SQLite's
busy-wait and than one commit per write.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from fhir_server.storage.checkpointer import Checkpointer
from fhir_server.storage.group_commit import GroupCommit
from fhir_server.storage.locks import advisory_lock, file_lock
from fhir_server.storage.sqlite_planner import seed_statistics

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# alembic runs a migration through module-level proxies (``alembic.context``): one at a time per process
_MIGRATING = threading.Lock()
_TX_STATE = "write_transaction"


def transaction_state(conn: Connection) -> dict | None:
    """State kept for the current write transaction of ``conn`` (None outside one)."""
    return conn.info.get(_TX_STATE)


def before_commit(conn: Connection) -> list:
    """Callables to run just before this connection's write transaction commits."""
    return conn.info[_TX_STATE].setdefault("before_commit", [])


def after_commit(conn: Connection) -> list:
    """Callables to run once this connection's write transaction has committed."""
    return conn.info[_TX_STATE].setdefault("after_commit", [])


def at_database_commit(conn: Connection) -> dict:
    """Callables by name, each run once just before the database transaction that carries this
    write commits, as ``callback(conn, states)``: ``states`` are the ``transaction_state`` of
    every write it carries that succeeded (several under SQLite's group commit, else one).

    For work worth sharing between concurrent writes (one audit record for a batch). A callback
    may write through ``conn``; its own ``before_commit`` callables run after it. If it fails,
    every write of the batch fails: nothing is committed.
    """
    return conn.info[_TX_STATE].setdefault("at_database_commit", {})


def finish_database_transaction(conn: Connection, states: list[dict]) -> None:
    """Run the ``at_database_commit`` callables of ``states`` (each name once) in a state of
    their own, then that state's ``before_commit`` callables."""
    callbacks: dict = {}
    for state in states:
        for name, callback in state.get("at_database_commit", {}).items():
            callbacks.setdefault(name, callback)
    if not callbacks:
        return
    conn.info[_TX_STATE] = own = {}
    try:
        for callback in callbacks.values():
            callback(conn, states)
        for callback in own.get("before_commit", ()):
            callback()
    finally:
        conn.info.pop(_TX_STATE, None)


@contextlib.contextmanager
def driver_cursor(conn: Connection, sql: str, params: object) -> Iterator:
    """A cursor of the driver itself, for the write path's hot statements (no SQLAlchemy
    per-statement work); a driver error inside is raised as SQLAlchemy would raise it
    (``IntegrityError``: e.g. a create that lost a race, 409)."""
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.driver_connection.cursor()
    try:
        yield cursor
    except dbapi.Error as exc:
        raise DBAPIError.instance(sql, params, exc, dbapi.Error) from exc
    finally:
        cursor.close()


def driver_executemany(conn: Connection, sql: str, params: list) -> None:
    """``sql`` for each of ``params``, on the driver's own cursor (bulk inserts)."""
    with driver_cursor(conn, sql, params) as cursor:
        cursor.executemany(sql, params)


class _Snapshot:
    """A read transaction opened by the first read that needs it and shared by the next ones;
    ``end`` lets it go (once the reads using it are done) so that the next read opens another."""

    def __init__(self, open_transaction):
        self._open = open_transaction
        self._held: contextlib.ExitStack | None = None
        self._conn: Connection | None = None
        self._reading = 0  # read blocks using it now
        self._ending = False

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        if self._held is None:
            self._held = contextlib.ExitStack()
            self._conn = self._held.enter_context(self._open())
        self._reading += 1
        try:
            yield self._conn
        except BaseException:
            self._ending = True  # a failed statement may have spoilt the transaction (PostgreSQL)
            raise
        finally:
            self._reading -= 1
            if self._ending and not self._reading:
                self.end()

    def end(self) -> None:
        if self._reading:
            self._ending = True
            return
        held, self._held, self._conn, self._ending = self._held, None, None, False
        if held is not None:
            held.close()


class Database:
    """An engine plus the way to open read and write transactions on it."""

    def __init__(self, url: str):
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._thread = threading.local()  # .snapshot: the thread's shared read transaction, if any
        if self.is_sqlite:
            self.engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=16,
                max_overflow=16,
            )
            _configure_sqlite(self.engine)
            self._checkpointer = Checkpointer(self.url.database)
            # writers of every process sharing the file take turns through a lock beside it
            self._group_commit = GroupCommit(self.engine, _TX_STATE, finish_database_transaction,
                                             f"{self.url.database}.write-lock",
                                             committed=self._checkpointer.written)
        else:
            # JIT compilation costs tens of milliseconds per query: a loss for short FHIR queries
            self.engine = create_engine(
                url, pool_size=10, max_overflow=20, pool_pre_ping=True,
                connect_args={"options": "-c jit=off"},
            )

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on any error.

        ``transaction_state(conn)`` is a dict that lives exactly as long as the block;
        callables in ``before_commit(conn)`` run at its end, before the commit, and those in
        ``after_commit(conn)`` once the commit has succeeded (outside any lock, so they may open
        transactions of their own). On SQLite, concurrent blocks share one commit
        (``group_commit``); each still succeeds or fails on its own, and the callables in
        ``at_database_commit(conn)`` see all the blocks that succeeded.
        """
        snapshot = getattr(self._thread, "snapshot", None)
        if snapshot is not None:
            snapshot.end()  # reads after a write see it (and what others committed by then)
        if self.is_sqlite:
            with self._group_commit.writer() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            conn.begin()
            conn.info[_TX_STATE] = state = {}
            try:
                yield conn
                for callback in state.get("before_commit", ()):
                    callback()
                finish_database_transaction(conn, [state])
            except BaseException:
                conn.rollback()
                raise
            else:
                conn.commit()
            finally:
                conn.info.pop(_TX_STATE, None)
        for callback in state.get("after_commit", ()):
            callback()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        snapshot = getattr(self._thread, "snapshot", None)
        with snapshot.reading() if snapshot is not None else self._transaction() as conn:
            yield conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Let this thread's reads share one read transaction for the length of the block, until
        the thread writes (the reads after a write open another). For a burst of small look-ups
        (an HL7 message's: duplicates, patients, known identifiers) that would each open, and on
        SQLite find cold, a transaction of their own. Nested blocks share the outer one."""
        if getattr(self._thread, "snapshot", None) is not None:
            yield
            return
        self._thread.snapshot = snapshot = _Snapshot(self._transaction)
        try:
            yield
        finally:
            self._thread.snapshot = None
            snapshot.end()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A read transaction of its own."""
        with self.engine.connect() as conn:
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN")
            else:
                conn.begin()
            try:
                yield conn
            finally:
                conn.rollback()

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the lock ``name`` against every other holder, in any thread or process using
        this database (waiting for it as long as it takes). Not a transaction: the block opens
        its own."""
        if self.is_sqlite:
            with file_lock(Path(f"{self.url.database}.locks"), name):
                yield
        else:
            with advisory_lock(self.engine, name):
                yield

    def migrate(self) -> None:
        """Bring the schema to the newest migration of every branch (creates it on an empty database)."""
        with _MIGRATING, self.engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
            if self.is_sqlite:
                seed_statistics(conn)

    def analyze(self) -> None:
        """Refresh the planner's statistics (after a bulk load)."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()

    def dispose(self) -> None:
        if self.is_sqlite:
            self._group_commit.close()
            self._checkpointer.close()
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Transactions are begun explicitly (see Database.write / read).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA cache_size=-65536")
        # A checkpoint (copying the WAL back into the database, with fsyncs) every ~40 MiB of
        # WAL rather than SQLite's 4 MiB: each write commit then costs fewer page writes. The
        # checkpointer thread (checkpointer.py) copies most pages before a commit gets there.
        cur.execute("PRAGMA wal_autocheckpoint=10000")
        cur.execute("PRAGMA journal_size_limit=67108864")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.execute("PRAGMA mmap_size=268435456")
        cur.close()
