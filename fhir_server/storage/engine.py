"""Engine creation: the few places where SQLite and PostgreSQL differ at connection level.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (durable across a process crash, which is
what an ACKed HL7 message needs), and every write transaction starts with ``BEGIN IMMEDIATE``
so that two writers never deadlock upgrading a read lock. Within one process, writers also
queue on a lock, which is cheaper than SQLite's busy-wait.
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

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_AFTER_COMMIT = "after_commit"


def after_commit(conn: Connection) -> list:
    """The list of callables to run when this connection's write transaction commits."""
    return conn.info.setdefault(_AFTER_COMMIT, [])


class Database:
    """An engine plus the way to open read and write transactions on it."""

    def __init__(self, url: str):
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        if self.is_sqlite:
            self.engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=16,
                max_overflow=16,
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on any error.

        Callables put in ``after_commit(conn)`` run once the commit has succeeded and the
        write lock is released (so they may open transactions of their own).
        """
        with self._write_lock, self.engine.connect() as conn:
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.begin()
            try:
                yield conn
            except BaseException:
                conn.info.pop(_AFTER_COMMIT, None)
                conn.rollback()
                raise
            conn.commit()
            callbacks = conn.info.pop(_AFTER_COMMIT, ())
        for callback in callbacks:
            callback()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN")
            else:
                conn.begin()
            try:
                yield conn
            finally:
                conn.rollback()

    def migrate(self) -> None:
        """Bring the schema to the newest migration (creates it on an empty database)."""
        with self.engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
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
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.execute("PRAGMA mmap_size=268435456")
        cur.close()
