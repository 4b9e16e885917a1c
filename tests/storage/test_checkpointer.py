"""Background checkpoints: a commit's pages reach the database file without a writer copying them."""

from __future__ import annotations

import sqlite3
import threading
import time

from sqlalchemy import text

from fhir_server.storage.engine import Database


def in_database_file(path, name: str) -> bool:
    """Whether the database file itself (the WAL ignored: ``immutable``) holds the item."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM item WHERE name = ?", (name,)).fetchone()[0] == 1
    finally:
        conn.close()


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_committed_write_is_checkpointed_into_the_file_soon_after(tmp_path):
    path = tmp_path / "ckpt.sqlite"
    db = Database(f"sqlite:///{path}")
    try:
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE item (name TEXT PRIMARY KEY)"))
        with db.engine.connect() as conn:  # the table itself into the file: only the rows are at stake
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        with db.write() as conn:
            conn.execute(text("INSERT INTO item (name) VALUES ('一')"))
        # a handful of pages, far below wal_autocheckpoint: only the background pass copies them
        assert wait_for(lambda: in_database_file(path, "一"))
    finally:
        db.dispose()


def test_without_writes_there_is_no_thread_and_closing_stops_it(tmp_path):
    path = tmp_path / "idle.sqlite"

    def checkpointers() -> int:
        return sum(t.name == "sqlite-checkpointer" for t in threading.enumerate())

    before = checkpointers()
    db = Database(f"sqlite:///{path}")
    with db.read() as conn:
        conn.execute(text("SELECT 1"))
    assert checkpointers() == before
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE item (name TEXT PRIMARY KEY)"))
    with db.write() as conn:
        conn.execute(text("INSERT INTO item (name) VALUES ('二')"))
    assert checkpointers() == before + 1
    db.dispose()
    assert checkpointers() == before
