"""The audit journal: the audit records of committed writes, waiting to become AuditEvents.

A write stores its audit record here, in its own database transaction: one short row in a
table whose inserts all land on its last page. A committed change therefore always has its
record and a rolled-back one has none, while the AuditEvent itself (a resource with some twenty
index rows) is written later, off the write's path, by the audit trail's background flush
(``fhir_server/auth/audit.py``). The flush deletes the rows it turned into events in the
transaction that stores those events, so each record becomes an event exactly once, also after
a crash: the next flush, in this process or the next one, takes what the last one left.

Migration: ``storage/migrations/versions/0005_audit_journal.py`` (branch ``audit``).
"""

from __future__ import annotations

from sqlalchemy import Column, Connection, LargeBinary, Table, delete, insert, select, true

from fhir_server.storage.schema import PidType, metadata

audit_journal = Table(
    "audit_journal",
    metadata,
    Column("id", PidType, primary_key=True, autoincrement=True),
    Column("record", LargeBinary, nullable=False),  # JSON, written by the audit trail
    sqlite_autoincrement=True,  # an id is never given twice: a flush may skip a record by its id
)


def append(conn: Connection, records: list[bytes]) -> None:
    conn.execute(insert(audit_journal), [{"record": record} for record in records])


def take(conn: Connection, limit: int, skip: set[int] = frozenset()) -> list[tuple[int, bytes]]:
    """The oldest ``limit`` records but those in ``skip``, locked for this transaction; on
    PostgreSQL, records another process's flush holds are skipped (SQLite's writers take turns)."""
    query = (select(audit_journal.c.id, audit_journal.c.record).where(_not_in(skip))
             .order_by(audit_journal.c.id).limit(limit).with_for_update(skip_locked=True))
    return [(row.id, row.record) for row in conn.execute(query)]


def remove(conn: Connection, ids: list[int]) -> None:
    if ids:
        conn.execute(delete(audit_journal).where(audit_journal.c.id.in_(ids)))


def has_records(conn: Connection, skip: set[int] = frozenset()) -> bool:
    return conn.execute(select(audit_journal.c.id).where(_not_in(skip)).limit(1)).first() is not None


def _not_in(skip: set[int]):
    return audit_journal.c.id.not_in(sorted(skip)) if skip else true()


__all__ = ["audit_journal", "append", "take", "remove", "has_records"]
