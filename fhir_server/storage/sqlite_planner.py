"""Planner statistics for SQLite, so that a new database is planned like a full one.

SQLite chooses indexes from ``sqlite_stat1``. On a database that has never been analysed it
guesses, and inside a per-row ``EXISTS`` probe it may pick a range over ``(sp, high)`` (every
observation date) instead of the ``(pid, sp)`` equality (one row). SQLite documents writing
``sqlite_stat1`` by hand for exactly this; the figures below describe the shape of the data
(millions of index rows, about a dozen per resource, many per parameter key) and are replaced
by real ones whenever ``ANALYZE`` runs (``python -m fhir_server demo`` runs it after loading).
"""

from __future__ import annotations

from sqlalchemy import Connection

from fhir_server.storage.schema import metadata

ROWS = 1_000_000
# Average rows per distinct value of the leading columns, by the kind of leading column.
_PER_VALUE = {"pid": 12, "sp": 20_000, "res_type": 50_000}


def _stat(index) -> str:
    columns = [c.name for c in index.columns]
    figures = [ROWS, _PER_VALUE.get(columns[0], 20)]
    for _ in columns[1:]:
        figures.append(max(1, figures[-1] // 100))
    return " ".join(str(f) for f in figures)


def seed_statistics(conn: Connection) -> None:
    """Write default statistics for every index that has none (never overwrites ANALYZE's)."""
    conn.exec_driver_sql("ANALYZE sqlite_schema")  # creates sqlite_stat1 if it is missing
    present = {row[0] for row in conn.exec_driver_sql("SELECT idx FROM sqlite_stat1 WHERE idx IS NOT NULL")}
    # Named indexes only: SQLite already trusts a unique index (an equality finds one row).
    rows = [
        (table.name, index.name, _stat(index))
        for table in metadata.sorted_tables for index in table.indexes if index.name not in present
    ]
    if rows:
        conn.exec_driver_sql("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", rows)
        conn.exec_driver_sql("ANALYZE sqlite_schema")  # reload the statistics

