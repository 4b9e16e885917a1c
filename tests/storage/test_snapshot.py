"""Database.snapshot: a thread's reads share one read transaction until the thread writes."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from adapters.hl7v2.inbound_store import Delivery, InboundStore, hl7_inbound


def stored(conn) -> int:
    return conn.execute(select(func.count()).select_from(hl7_inbound)).scalar_one()


def add(server, control_id: str) -> None:
    InboundStore(server.db).receive(Delivery("LIS|X", control_id, "ORU^R01", "2.5", "utf-8", "test", b"MSH"))


def test_reads_in_a_snapshot_share_one_transaction(server):
    db = server.db
    with db.snapshot():
        with db.read() as first:
            assert stored(first) == 0
        with db.read() as second:
            assert second is first
    with db.read() as after, db.read() as other:
        assert after is not first and other is not after  # outside the block: one each


def test_a_write_ends_the_shared_transaction_and_later_reads_see_it(server):
    db = server.db
    with db.snapshot():
        with db.read() as before:
            assert stored(before) == 0
        add(server, "W1")
        with db.read() as after:
            assert after is not before
            assert stored(after) == 1
        with db.read() as again:
            assert again is after  # shared again from there on


def test_a_write_inside_a_read_block_lets_the_block_finish_on_its_connection(server):
    db = server.db
    with db.snapshot():
        with db.read() as outer:
            add(server, "W2")
            assert stored(outer) in (0, 1)  # still usable (SQLite: its snapshot; PostgreSQL: read committed)
            with db.read() as inner:
                assert inner is outer  # the block has not ended yet
        with db.read() as fresh:
            assert fresh is not outer and stored(fresh) == 1


def test_a_failed_statement_ends_the_shared_transaction(server):
    db = server.db
    with db.snapshot():
        with pytest.raises(DBAPIError), db.read() as broken:
            broken.exec_driver_sql("SELECT no_such_column FROM hl7_inbound")
        with db.read() as fresh:  # on PostgreSQL the failed transaction would refuse every statement
            assert fresh is not broken and stored(fresh) == 0


def test_other_threads_do_not_share_it(server):
    db = server.db
    seen = {}

    def read_elsewhere():
        with db.read() as conn:
            seen["other"] = conn

    with db.snapshot(), db.read() as mine:
        worker = threading.Thread(target=read_elsewhere)
        worker.start()
        worker.join()
    assert seen["other"] is not mine
