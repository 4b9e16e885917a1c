"""Group commit on SQLite: concurrent writers share commits but succeed or fail on their own."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError

from fhir_server.storage.engine import Database, after_commit, at_database_commit, transaction_state


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'group.sqlite'}")
    with database.engine.begin() as conn:
        conn.execute(text("CREATE TABLE item (name TEXT PRIMARY KEY)"))
    yield database
    database.dispose()


def names(db) -> set[str]:
    with db.read() as conn:
        return {row[0] for row in conn.execute(text("SELECT name FROM item"))}


def write(db, name: str, fail: bool = False):
    with db.write() as conn:
        conn.execute(text("INSERT INTO item (name) VALUES (:n)"), {"n": name})
        if fail:
            raise ValueError(f"{name} fails")


def test_a_failing_writer_rolls_back_only_its_own_work(db):
    errors: dict[str, BaseException] = {}

    def run(name: str) -> None:
        try:
            write(db, name, fail=name.endswith("3"))
        except ValueError as exc:
            errors[name] = exc

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(errors) == {"w3"}
    assert names(db) == {f"w{i}" for i in range(8)} - {"w3"}


def test_writes_are_visible_once_the_block_returns(db):
    write(db, "first")
    assert names(db) == {"first"}


def test_a_constraint_violation_fails_that_writer_only(db):
    write(db, "taken")
    with pytest.raises(IntegrityError):
        write(db, "taken")  # the primary key refuses it inside the writer's own savepoint
    assert names(db) == {"taken"}


def test_after_commit_callbacks_run_only_after_the_commit(db):
    seen = []

    with db.write() as conn:
        conn.execute(text("INSERT INTO item (name) VALUES ('x')"))
        after_commit(conn).append(lambda: seen.append(names(db)))
        assert seen == []
    assert seen == [{"x"}]


def test_after_commit_callbacks_of_a_failed_writer_never_run(db):
    seen = []
    with pytest.raises(ValueError), db.write() as conn:
        after_commit(conn).append(lambda: seen.append("ran"))
        raise ValueError("no")
    write(db, "later")
    assert seen == []


def test_many_concurrent_writers_all_commit(db):
    threads = [threading.Thread(target=write, args=(db, f"n{i}")) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names(db)) == 200


def test_writers_sharing_a_commit_share_its_database_commit_callbacks(db):
    """Writers that queue behind one another commit together; the callables registered with
    ``at_database_commit`` run once for the batch, see the writers that succeeded and none that
    failed, and what they write commits with the batch."""
    seen: list[list[str]] = []

    def record_batch(conn, states):
        seen.append(sorted(state["name"] for state in states))
        conn.execute(text("INSERT INTO item (name) VALUES (:n)"), {"n": f"batch-of-{len(states)}"})

    def writer(name: str, fail: bool = False) -> None:
        with db.write() as conn:
            transaction_state(conn)["name"] = name
            at_database_commit(conn).setdefault("record", record_batch)
            conn.execute(text("INSERT INTO item (name) VALUES (:n)"), {"n": name})
            if fail:
                raise ValueError(name)

    queued = threading.Event()
    group = db._group_commit
    others = [threading.Thread(target=writer, args=("b",)),
              threading.Thread(target=lambda: pytest.raises(ValueError, writer, "c", True))]

    with db.write() as conn:  # the first writer holds its turn until the two others queue behind it
        transaction_state(conn)["name"] = "a"
        at_database_commit(conn).setdefault("record", record_batch)
        conn.execute(text("INSERT INTO item (name) VALUES ('a')"))
        for thread in others:
            thread.start()
        while group._waiting < 2:
            queued.wait(0.01)
    for thread in others:
        thread.join()
    assert seen == [["a", "b"]]
    assert names(db) == {"a", "b", "batch-of-2"}


def test_a_failing_database_commit_callback_fails_every_writer_of_the_batch(db):
    def refuse(conn, states):
        raise RuntimeError("the batch's shared work failed")

    with pytest.raises(RuntimeError), db.write() as conn:
        at_database_commit(conn).setdefault("refuse", refuse)
        conn.execute(text("INSERT INTO item (name) VALUES ('lost')"))
    assert names(db) == set()


def test_a_writer_that_cannot_begin_leaves_the_queue_working(db, tmp_path):
    """Another program holding SQLite's write lock past the busy timeout fails that writer
    (an error, not a hang), and the next writer, once the lock is free, commits."""
    import sqlite3

    @event.listens_for(db.engine, "connect")
    def short_wait(dbapi_conn, _record):
        dbapi_conn.execute("PRAGMA busy_timeout=100")

    db.dispose()  # new connections get the short wait
    other = sqlite3.connect(tmp_path / "group.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(OperationalError, match="locked"):
        write(db, "blocked")
    other.execute("ROLLBACK")
    other.close()
    write(db, "after")
    assert names(db) == {"after"}


def _write_many(url: str, prefix: str) -> None:
    database = Database(url)
    for i in range(50):
        with database.write() as conn:
            conn.execute(text("INSERT INTO item (name) VALUES (:n)"), {"n": f"{prefix}{i}"})
    database.dispose()


def test_two_processes_writing_one_sqlite_file_take_turns(db, tmp_path):
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'group.sqlite'}"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(url, p)) for p in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(names(db)) == 100
