"""The access tables: which patient each resource belongs to, who holds each patient, and the
organisation tree, kept in the write transaction of every change (see ``fhir_server/auth/access.py``
for the rules that fill them and the predicates that read them).

- ``access_resource``: (res_type, res_id) -> patient_id, one row per patient a resource belongs
  to (a Patient belongs to itself). A resource without rows is not patient data. Rows of a deleted
  resource stay, so that its 410 and its history remain as private as the resource was.
- ``access_patient_org``: patient_id -> org_id, with the resource that established it
  (``source_type``/``source_id``: the Patient for its managing organisation, a ServiceRequest
  for a referral...), so that a change of that resource replaces exactly its own rows.
- ``access_organization``: org_id -> parent_id (``Organization.partOf``) and ``county_wide``.

Migration: ``storage/migrations/versions/0003_access_scope.py`` (branch ``access``).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Dialect,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
)

from fhir_server.storage.engine import driver_executemany
from fhir_server.storage.schema import metadata

access_resource = Table(
    "access_resource",
    metadata,
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    PrimaryKeyConstraint("res_type", "res_id", "patient_id", name="pk_access_resource"),
    Index("ix_access_resource_patient", "patient_id"),
)

access_patient_org = Table(
    "access_patient_org",
    metadata,
    Column("patient_id", String(64), nullable=False),
    Column("org_id", String(64), nullable=False),
    Column("source_type", String(64), nullable=False),
    Column("source_id", String(64), nullable=False),
    Index("ix_access_patient_org_patient_org", "patient_id", "org_id"),
    Index("ix_access_patient_org_source", "source_type", "source_id"),
)

access_organization = Table(
    "access_organization",
    metadata,
    Column("org_id", String(64), primary_key=True),
    Column("parent_id", String(64), nullable=True),
    Column("county_wide", Boolean, nullable=False),
    Index("ix_access_organization_parent", "parent_id"),
)

ACCESS_TABLES = (access_resource, access_patient_org, access_organization)

# The statements of every write, run through the driver (they run once or twice per stored
# resource, where SQLAlchemy's per-statement work would cost as much as the SQL itself).
_STATEMENTS = {
    "delete_resource": delete(access_resource).where(
        access_resource.c.res_type == bindparam("res_type"), access_resource.c.res_id == bindparam("res_id")),
    "insert_resource": insert(access_resource),
    "delete_holders": delete(access_patient_org).where(
        access_patient_org.c.source_type == bindparam("source_type"),
        access_patient_org.c.source_id == bindparam("source_id")),
    "insert_holders": insert(access_patient_org),
}


@cache
def _compiled(dialect: Dialect, name: str) -> tuple[str, tuple[str, ...] | None]:
    compiled = _STATEMENTS[name].compile(dialect=dialect)
    return str(compiled), tuple(compiled.positiontup) if compiled.positional else None


def _run(conn: Connection, name: str, rows: list[dict]) -> None:
    sql, order = _compiled(conn.dialect, name)
    params = [tuple(row[key] for key in order) for row in rows] if order else rows
    driver_executemany(conn, sql, params)


def set_resource_patients(conn: Connection, res_type: str, res_id: str, patients: Iterable[str],
                          *, fresh: bool = False) -> None:
    """Replace the patients a resource belongs to (``fresh``: it has no rows yet, e.g. a
    resource created just now)."""
    if not fresh:
        _run(conn, "delete_resource", [{"res_type": res_type, "res_id": res_id}])
    rows = [{"res_type": res_type, "res_id": res_id, "patient_id": p} for p in sorted(set(patients))]
    if rows:
        _run(conn, "insert_resource", rows)


def set_patient_holders(conn: Connection, source_type: str, source_id: str,
                        pairs: Iterable[tuple[str, str]], *, fresh: bool = False) -> None:
    """Replace the (patient, organisation) pairs that one resource establishes (``fresh``: it
    has none yet)."""
    if not fresh:
        _run(conn, "delete_holders", [{"source_type": source_type, "source_id": source_id}])
    rows = [{"patient_id": p, "org_id": o, "source_type": source_type, "source_id": source_id}
            for p, o in sorted(set(pairs))]
    if rows:
        _run(conn, "insert_holders", rows)


def set_organization(conn: Connection, org_id: str, parent_id: str | None, county_wide: bool) -> None:
    remove_organization(conn, org_id)
    conn.execute(insert(access_organization).values(org_id=org_id, parent_id=parent_id, county_wide=county_wide))


def remove_organization(conn: Connection, org_id: str) -> None:
    conn.execute(delete(access_organization).where(access_organization.c.org_id == org_id))


def organization(conn: Connection, org_id: str) -> tuple[str | None, bool] | None:
    """(parent_id, county_wide) of a known organisation, else None."""
    row = conn.execute(
        select(access_organization.c.parent_id, access_organization.c.county_wide)
        .where(access_organization.c.org_id == org_id)
    ).first()
    return (row.parent_id, bool(row.county_wide)) if row else None


def subtree(conn: Connection, root_id: str) -> list[str]:
    """``root_id`` and every organisation below it by ``partOf`` (UNION stops on a cycle)."""
    tree = select(access_organization.c.org_id).where(access_organization.c.org_id == root_id).cte(
        "org_tree", recursive=True)
    child = access_organization.alias("child")
    tree = tree.union(select(child.c.org_id).where(child.c.parent_id == tree.c.org_id))
    found = [row.org_id for row in conn.execute(select(tree.c.org_id))]
    return found if root_id in found else [root_id, *found]


def patients_of_resources(conn: Connection, res_type: str, res_ids: list[str]) -> dict[str, set[str]]:
    """res_id -> the patients it belongs to, for resources of one type."""
    found: dict[str, set[str]] = {}
    for start in range(0, len(res_ids), 500):
        query = select(access_resource.c.res_id, access_resource.c.patient_id).where(
            access_resource.c.res_type == res_type, access_resource.c.res_id.in_(res_ids[start:start + 500]))
        for row in conn.execute(query):
            found.setdefault(row.res_id, set()).add(row.patient_id)
    return found


__all__ = [
    "ACCESS_TABLES", "access_organization", "access_patient_org", "access_resource", "organization",
    "patients_of_resources", "remove_organization", "set_organization", "set_patient_holders",
    "set_resource_patients", "subtree",
]
