"""The one database schema, shared by SQLite and PostgreSQL (SQLAlchemy Core).

- ``resource`` holds the current version of every resource (a deleted one keeps its row,
  ``deleted`` set and no content, so that a read answers 410 and ids are never reused).
- ``resource_history`` holds every version, the current one included.
- ``search_param`` gives each (resource type, search parameter code) a small integer key,
  so that index rows stay narrow. Composite parameters index each component under the
  pseudo-code ``<code>~<n>``, and rows of one matching element share ``grp``.
- one ``idx_<kind>`` table per search-parameter kind; rows exist only for live resources.

Timestamps are naive UTC ``DateTime`` values on both engines.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.sql.elements import ColumnElement

metadata = MetaData()

# Integer on SQLite so that the key is the rowid; 64-bit on PostgreSQL.
PidType = BigInteger().with_variant(Integer(), "sqlite")

resource = Table(
    "resource",
    metadata,
    Column("pid", PidType, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=True),
    UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    Index("ix_resource_type_updated", "res_type", "last_updated"),
    Index("ix_resource_updated", "last_updated"),
)

resource_history = Table(
    "resource_history",
    metadata,
    Column("pid", PidType, primary_key=True, autoincrement=False),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("last_updated", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("method", String(8), nullable=False),
    Column("content", Text, nullable=True),
    Index("ix_history_updated", "last_updated"),
    Index("ix_history_type_updated", "res_type", "last_updated"),
)

search_param = Table(
    "search_param",
    metadata,
    Column("sp", Integer, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("code", String(128), nullable=False),
    UniqueConstraint("res_type", "code", name="uq_search_param_type_code"),
)


def _index_table(kind: str, *columns: Column, indexes: tuple[tuple[str, ...], ...]) -> Table:
    """An index table: its own columns plus the search parameter key, the resource and group."""
    name = f"idx_{kind}"
    return Table(
        name,
        metadata,
        Column("sp", Integer, nullable=False),
        Column("pid", PidType, nullable=False),
        Column("grp", SmallInteger, nullable=True),
        *columns,
        Index(_index_name(name, ("pid", "sp")), "pid", "sp"),  # per-row checks and replacing a resource's rows
        *(Index(_index_name(name, cols), *cols) for cols in indexes),
    )


def _index_name(table: str, columns: tuple[str, ...]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def _partial_index(table: Table, columns: tuple[str, ...], where: ColumnElement) -> Index:
    """An index of ``table``'s rows that meet ``where`` only."""
    return Index(_index_name(table.name, columns), *(table.c[c] for c in columns),
                 sqlite_where=where, postgresql_where=where)


idx_string = _index_table(
    "string",
    Column("value", String(256), nullable=False),  # normalised: case and accents folded
    Column("exact", String(256), nullable=False),
    indexes=(("sp", "value"),),
)

idx_token = _index_table(
    "token",
    Column("system", String(256), nullable=True),
    Column("code", String(256), nullable=True),
    Column("text", String(256), nullable=True),  # display / text, normalised, for :text
    Column("type_system", String(256), nullable=True),  # Identifier.type, for :of-type
    Column("type_code", String(64), nullable=True),
    indexes=(("sp", "code", "system"),),
)

idx_date = _index_table(
    "date",
    Column("low", DateTime, nullable=False),
    Column("high", DateTime, nullable=False),
    indexes=(("sp", "low"), ("sp", "high")),
)

idx_number = _index_table(
    "number",
    Column("value", Float, nullable=False),
    indexes=(("sp", "value"),),
)

idx_quantity = _index_table(
    "quantity",
    Column("system", String(256), nullable=True),
    Column("code", String(64), nullable=True),
    Column("unit", String(64), nullable=True),
    Column("value", Float, nullable=False),
    Column("canonical_code", String(64), nullable=True),  # UCUM canonical unit, if convertible
    Column("canonical_value", Float, nullable=True),
    indexes=(("sp", "canonical_code", "canonical_value"),),
)
# Rows in a unit without a canonical form only: the others are searched canonically (index/quantity.py)
_partial_index(idx_quantity, ("sp", "code", "value"), idx_quantity.c.canonical_code.is_(None))

idx_reference = _index_table(
    "reference",
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("url", String(512), nullable=True),  # absolute or canonical references
    Column("identifier_system", String(256), nullable=True),  # Reference.identifier, for :identifier
    Column("identifier_value", String(256), nullable=True),
    indexes=(("sp", "target_id", "target_type"), ("target_id", "target_type")),
)
# Partial: most references are Type/id, and their rows have neither a url nor an identifier
for _column in ("url", "identifier_value"):
    _partial_index(idx_reference, ("sp", _column), idx_reference.c[_column].isnot(None))

idx_uri = _index_table(
    "uri",
    Column("uri", String(512), nullable=False),
    indexes=(("sp", "uri"),),
)

INDEX_TABLES = {
    "string": idx_string,
    "token": idx_token,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_quantity,
    "reference": idx_reference,
    "uri": idx_uri,
}
