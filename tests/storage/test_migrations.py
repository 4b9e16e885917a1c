"""The Alembic migrations build exactly the schema that fhir_server/storage/schema.py declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from fhir_server.storage.schema import metadata


def test_migrations_match_the_declared_schema(server):
    with server.db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_sqlite_gets_planner_statistics_that_prefer_the_per_resource_index(server):
    if not server.db.is_sqlite:
        return
    with server.db.engine.connect() as conn:
        stats = dict(conn.exec_driver_sql("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'idx_date'").fetchall())
    rows_per_pid = int(stats["ix_idx_date_pid_sp"].split()[1])
    rows_per_param = int(stats["ix_idx_date_sp_high"].split()[1])
    assert rows_per_pid < rows_per_param
