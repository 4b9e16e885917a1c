"""Organisation-scoped access: who may see and change which resource, as SQL predicates.

**Patient data.** A resource is patient data when it belongs to a patient: a Patient belongs to
itself; any other resource to the patients its Patient-compartment parameters point at
(``profiles/fhir-r4b/compartment-patient.json``: ``Observation.subject``/``performer``,
``Encounter.subject``, ``Group.member``, ``AuditEvent.entity``...). Resources of
other types (Organization, Practitioner, Location, conformance resources...) are visible to
every caller whose scopes allow the type. A resource that belongs to several patients (a
self-management Group) is visible to whoever sees any of them. A resource of a
patient-compartment type that names no patient we can resolve (a Group without members, an
Observation whose subject is a logical reference by identifier) is visible only to unrestricted
callers: who holds it cannot be told, so access fails closed.

**Who holds a patient.** The organisations responsible for a patient are, from these elements
(only references written ``Organization/<id>`` count):

=================  ===============================================  ===========================
resource           organisation elements                            only while status is
=================  ===============================================  ===========================
Patient            managingOrganization, generalPractitioner        (always)
ServiceRequest     requester, performer (a referral)                active
Task               requester, owner (a referral task)               requested, received,
                                                                    accepted, ready, in-progress
CarePlan           author, contributor                              active
CareTeam           managingOrganization, participant.member,        active
                   participant.onBehalfOf
EpisodeOfCare      managingOrganization                             active
Encounter          serviceProvider                                  arrived, triaged,
                                                                    in-progress
=================  ===============================================  ===========================

The patient of each is its ``subject`` (``Task.for``, ``EpisodeOfCare.patient``). A
PractitionerRole reference is not followed to its organisation, and a CarePlan's careTeam
grants through the CareTeam resource itself.

**Who sees what.** A caller bound to organisation X sees the patients held by X or by any
organisation below X (``Organization.partOf``, followed downwards), and every resource that
belongs to one of them. An organisation is **county-wide** when it carries the extension
``ACCESS_SCOPE_EXTENSION`` with ``valueCode`` ``county``: it then sees what the top of its
``partOf`` chain sees. In the demo county the hospital sees every township and village by the
tree alone; the CDC (under the health bureau, beside the hospital) needs the extension, and a
client bound to the bureau sees the whole county too. A patient-scoped caller
(``identity.patient``) sees that patient's compartment only; a caller bound to no organisation
sees no patient data; ``identity.unrestricted`` (the server's own jobs) sees everything.

**Changes.** A caller may only write patient data of patients it already sees (403 otherwise; a
Patient counts as seen when its new managing organisation is in the caller's tree). It may only
write Organizations in its own tree, set ``partOf`` only to an organisation in its tree (so
nobody can graft its subtree onto a stranger's), and only a caller whose tree is a whole county
(its root has no ``partOf``) may mark an organisation county-wide. AuditEvents cannot be
changed or deleted by anyone.

**Out of scope is unknown.** read, vread, history, operations, update and patch answer 404,
delete answers as for an unknown id (nothing to delete), searches, counts, includes, chains and
``_has`` never find it, and conditional matches do not see it. A deleted resource keeps its rows,
so its 410 and its history are as private as it was. Ids are global: a PUT with a client-chosen
id that exists outside the scope answers 404 rather than creating (server ids are UUIDs).

**Enforcement** is a predicate added to the SQL of every read path (``View.rows``), over the
tables of ``fhir_server/storage/access.py``, which ``AccessPolicy.on_change`` keeps in the write
transaction and ``$reindex`` rebuilds. AuditEvents are readable only with a scope that names
``AuditEvent`` itself (an auditor client: ``system/AuditEvent.rs``); ``*`` scopes do not cover it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Connection, FromClause, and_, exists, not_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from fhir_server.auth.identity import Identity
from fhir_server.errors import Forbidden, Unprocessable
from fhir_server.search.registry import SearchParamRegistry
from fhir_server.storage import access as tables
from fhir_server.storage.engine import transaction_state
from fhir_server.storage.index.reference import parse_reference
from fhir_server.storage.schema import resource as resource_table

COMPARTMENT_FILE = Path("fhir-r4b") / "compartment-patient.json"
ACCESS_SCOPE_EXTENSION = "https://county-fhir.example.org/fhir/StructureDefinition/access-scope"
AUDIT_EVENT = "AuditEvent"
_ACTING = "acting_identity"
_VIEW = "access_view"

# resource type -> (patient elements, organisation elements, statuses in which it grants access)
HOLDERS: dict[str, tuple[tuple[str, ...], tuple[str, ...], frozenset[str] | None]] = {
    "Patient": ((), ("managingOrganization", "generalPractitioner"), None),
    "ServiceRequest": (("subject",), ("requester", "performer"), frozenset({"active"})),
    "Task": (("for",), ("requester", "owner"),
             frozenset({"requested", "received", "accepted", "ready", "in-progress"})),
    "CarePlan": (("subject",), ("author", "contributor"), frozenset({"active"})),
    "CareTeam": (("subject",), ("managingOrganization", "participant.member", "participant.onBehalfOf"),
                 frozenset({"active"})),
    "EpisodeOfCare": (("patient",), ("managingOrganization",), frozenset({"active"})),
    "Encounter": (("subject",), ("serviceProvider",), frozenset({"arrived", "triaged", "in-progress"})),
}

# (identity, action C/R/U/D, resource type, id, the patients concerned if known)
Refusal = Callable[[Identity, str, str, str, "set[str] | None"], None]


@lru_cache(maxsize=4)
def compartment_params(profiles_dir: Path) -> dict[str, tuple[str, ...]]:
    """Resource type -> the search parameters that put it in a patient's compartment."""
    definition = json.loads((profiles_dir / COMPARTMENT_FILE).read_text(encoding="utf-8"))
    return {r["code"]: tuple(r["param"]) for r in definition.get("resource", []) if r.get("param")}


# ---- the identity of the transaction's writer ------------------------------------------------
def act_as(conn: Connection, identity: Identity) -> None:
    """Record who writes in this write transaction (read by the on_change hooks)."""
    state = transaction_state(conn)
    if state is None:
        raise RuntimeError("act_as needs a write transaction")
    state[_ACTING] = identity


def acting(conn: Connection) -> Identity:
    state = transaction_state(conn)
    identity = state.get(_ACTING) if state is not None else None
    if identity is None:  # fail closed: a write path that forgot to say who writes
        raise RuntimeError("A resource was written without an identity (ResourceService methods take one)")
    return identity


# ---- reading a type at all -------------------------------------------------------------------
def may_read(identity: Identity, res_type: str, action: str = "r") -> bool:
    """Whether the scopes let the caller read (``r``) or search (``s``) a type at all.

    Scopes bind every caller, unrestricted ones too: ``unrestricted`` lifts only the
    organisation limit (an unrestricted client with ``system/Observation.rs`` includes no Patient).
    """
    if res_type == AUDIT_EVENT:  # only a scope naming AuditEvent itself
        return any(s.res_type == AUDIT_EVENT and action in s.actions for s in identity.resource_scopes)
    return identity.allows(res_type, action)


def require_read(identity: Identity, res_type: str, action: str = "r") -> None:
    """403 unless the scopes allow reading (or searching) the type; AuditEvents need an auditor."""
    if not may_read(identity, res_type, action):
        verb = "searching" if action == "s" else "reading"
        raise Forbidden(f"The access token does not allow {verb} {res_type} resources")


# ---- one caller's view -----------------------------------------------------------------------
class View:
    """What one identity sees, worked out once per request."""

    def __init__(self, identity: Identity, patient_types: frozenset[str], orgs: tuple[str, ...] = (),
                 top: bool = False):
        self.identity = identity
        self.patient_types = patient_types  # Patient and the types of its compartment
        self.orgs = orgs  # the organisations whose patients are visible (bound callers)
        self.top = top  # the caller's tree is a whole county (its root has no partOf)
        self.patient = identity.patient.removeprefix("Patient/") if identity.patient else None

    @property
    def unrestricted(self) -> bool:
        return self.identity.unrestricted

    def rows(self, row: FromClause) -> ColumnElement | None:
        """The condition on a ``resource`` or ``resource_history`` row (None: everything)."""
        if self.unrestricted:
            return None
        allowed = [row.c.res_type.not_in(sorted(self.patient_types))]  # not patient data
        held = self._held(row)
        if held is not None:
            allowed.append(held)
        if may_read(self.identity, AUDIT_EVENT):  # auditors also see events of no patient
            linked = tables.access_resource.alias()
            allowed.append(and_(row.c.res_type == AUDIT_EVENT, not_(exists(select(1).select_from(linked).where(
                linked.c.res_type == row.c.res_type, linked.c.res_id == row.c.res_id)))))
            return or_(*allowed)
        return and_(row.c.res_type != AUDIT_EVENT, or_(*allowed))  # not even through a chain

    def _held(self, row: FromClause) -> ColumnElement | None:
        """The row belongs to a patient the caller sees (None: the caller sees no patient)."""
        mine = tables.access_resource.alias()
        own = and_(mine.c.res_type == row.c.res_type, mine.c.res_id == row.c.res_id)
        if self.patient:
            return exists(select(1).select_from(mine).where(own, mine.c.patient_id == self.patient))
        if not self.orgs:
            return None
        holders = tables.access_patient_org.alias()
        return exists(
            select(1).select_from(mine.join(holders, holders.c.patient_id == mine.c.patient_id))
            .where(own, holders.c.org_id.in_(self.orgs))
        )

    def may_read(self, res_type: str, action: str = "r") -> bool:
        return may_read(self.identity, res_type, action)

    def holds(self, conn: Connection, patients: set[str]) -> bool:
        """Whether every one of ``patients`` is visible to the caller."""
        if self.unrestricted or not patients:
            return True
        if self.patient:
            return patients <= {self.patient}
        if not self.orgs:
            return False
        holders = tables.access_patient_org
        query = select(holders.c.patient_id).where(
            holders.c.patient_id.in_(sorted(patients)), holders.c.org_id.in_(self.orgs)).distinct()
        return {row.patient_id for row in conn.execute(query)} == patients


# ---- the policy ------------------------------------------------------------------------------
class AccessPolicy:
    def __init__(self, registry: SearchParamRegistry, profiles_dir: Path, base_url: str):
        self.registry = registry
        self.compartment = compartment_params(profiles_dir)
        self.patient_types = frozenset({"Patient", *self.compartment})
        self.base_url = base_url.rstrip("/")
        # Called when a read or write is refused for scope, so that the refusal is audited.
        self.refusals: list[Refusal] = []

    def view(self, conn: Connection, identity: Identity) -> View:
        """The caller's view; inside a write transaction it is worked out once per transaction
        (and again after an Organization changes)."""
        state = transaction_state(conn)
        cached = state.get(_VIEW) if state is not None else None
        if cached is not None and cached.identity is identity:
            return cached
        view = self._view(conn, identity)
        if state is not None:
            state[_VIEW] = view
        return view

    def _view(self, conn: Connection, identity: Identity) -> View:
        if identity.unrestricted or identity.patient or not identity.organization:
            return View(identity, self.patient_types)
        root = identity.organization.removeprefix("Organization/")
        known = tables.organization(conn, root)
        if known is not None and known[1]:  # county-wide: the top of its partOf chain
            seen = {root}
            while known is not None and known[0] and known[0] not in seen:
                root = known[0]
                seen.add(root)
                known = tables.organization(conn, root)
        top = known is not None and known[0] is None  # an unknown organisation is no county
        return View(identity, self.patient_types, tuple(tables.subtree(conn, root)), top)

    def can_see(self, conn: Connection, identity: Identity, res_type: str, res_id: str) -> bool:
        """Whether the resource (live or deleted) is inside the caller's view."""
        if identity.unrestricted:
            return True
        row = resource_table
        condition = self.view(conn, identity).rows(row)
        query = select(row.c.pid).where(row.c.res_type == res_type, row.c.res_id == res_id, condition)
        return conn.execute(query).first() is not None

    def refused(self, identity: Identity, action: str, res_type: str, res_id: str,
                patients: set[str] | None = None) -> None:
        for listener in self.refusals:
            listener(identity, action, res_type, res_id, patients)

    # ---- what a resource says about access ----------------------------------------------------
    def patients_of(self, resource: dict | None) -> set[str]:
        """The patients a resource belongs to (empty: not patient data)."""
        if not resource:
            return set()
        rtype = resource.get("resourceType")
        if rtype == "Patient":
            return {resource["id"]}
        found: set[str] = set()
        for code in self.compartment.get(rtype, ()):
            param = self.registry.get(rtype, code)
            if param is None or param.extract is None:
                continue
            for node in param.extract(resource):
                found.update(self._ids(node, "Patient"))
        return found

    def holders_of(self, resource: dict | None) -> set[tuple[str, str]]:
        """The (patient, organisation) pairs a resource establishes (see HOLDERS)."""
        if not resource or resource.get("resourceType") not in HOLDERS:
            return set()
        patient_paths, org_paths, statuses = HOLDERS[resource["resourceType"]]
        if statuses is not None and resource.get("status") not in statuses:
            return set()
        if resource["resourceType"] == "Patient":
            patients = {resource["id"]}
        else:
            patients = {p for path in patient_paths for node in _walk(resource, path) for p in self._ids(node, "Patient")}
        orgs = {o for path in org_paths for node in _walk(resource, path) for o in self._ids(node, "Organization")}
        return {(p, o) for p in patients for o in orgs}

    def _ids(self, node: object, wanted: str) -> list[str]:
        reference = node.get("reference") if isinstance(node, dict) else None
        if not isinstance(reference, str):
            return []
        rtype, rid, url = parse_reference(reference)
        if rtype != wanted or rid is None or (url and not url.startswith(self.base_url + "/")):
            return []
        return [rid]

    # ---- keeping the tables, in the write transaction ---------------------------------------
    def on_change(self, conn: Connection, before: dict | None, after: dict | None) -> None:
        """Check the writer may make this change (403), then bring the access tables up to date."""
        identity = acting(conn)
        current = after or before
        rtype, rid = current["resourceType"], current["id"]
        if before is not None and rtype == AUDIT_EVENT:
            raise Forbidden("AuditEvents cannot be changed or deleted")
        view = self.view(conn, identity)
        if rtype == "Organization":
            self._organization(conn, view, before, after)
            return
        # a first version has no rows yet (a deleted resource written again has its old ones)
        fresh = before is None and after is not None and after.get("meta", {}).get("versionId") == "1"
        if rtype == "Patient" and after is not None:
            tables.set_patient_holders(conn, "Patient", rid, self.holders_of(after), fresh=fresh)
        patients = self.patients_of(after)
        if after is not None and not view.holds(conn, patients):
            self.refused(identity, "C" if before is None else "U", rtype, rid, patients)
            raise Forbidden(f"The {rtype} belongs to a patient outside the organisation of the access token")
        if rtype in HOLDERS and rtype != "Patient":
            tables.set_patient_holders(conn, rtype, rid, self.holders_of(after), fresh=fresh)
        if after is not None and (before is None or self.patients_of(before) != patients):
            tables.set_resource_patients(conn, rtype, rid, patients, fresh=fresh)

    def rebuild(self, conn: Connection, resource: dict) -> None:
        """Recompute a stored resource's rows (``$reindex``), without checks."""
        rtype, rid = resource["resourceType"], resource["id"]
        if rtype == "Organization":
            tables.set_organization(conn, rid, _parent(resource), _county_wide(resource))
            return
        if rtype in HOLDERS:
            tables.set_patient_holders(conn, rtype, rid, self.holders_of(resource))
        tables.set_resource_patients(conn, rtype, rid, self.patients_of(resource))

    def _organization(self, conn: Connection, view: View, before: dict | None, after: dict | None) -> None:
        org_id = (after or before)["id"]
        parent = _parent(after) if after else None
        if not view.unrestricted:
            if not view.orgs:
                raise Forbidden("Only a caller bound to an organisation may change organisations")
            if before is not None and org_id not in view.orgs:
                raise Forbidden(f"Organization/{org_id} is outside the organisation of the access token")
            if after is not None:
                moved = before is None or _parent(before) != parent
                if moved and (parent not in view.orgs if parent is not None else not view.top):
                    raise Forbidden(f"Organization/{org_id} may only be placed inside the caller's organisation")
                if _county_wide(after) and not (before is not None and _county_wide(before)) and not view.top:
                    raise Forbidden("Only a county-wide caller may make an organisation county-wide")
        if after is not None and parent is not None and parent in tables.subtree(conn, org_id):
            raise Unprocessable(f"Organization/{org_id} cannot be part of its own sub-organisation {parent}")
        if after is None:
            tables.remove_organization(conn, org_id)
        else:
            tables.set_organization(conn, org_id, parent, _county_wide(after))
        transaction_state(conn).pop(_VIEW, None)  # the tree changed: views are worked out again


def _parent(organization: dict) -> str | None:
    part_of = organization.get("partOf")
    reference = part_of.get("reference") if isinstance(part_of, dict) else None
    if not isinstance(reference, str):
        return None
    rtype, rid, _ = parse_reference(reference)
    return rid if rtype == "Organization" else None


def _county_wide(organization: dict) -> bool:
    return any(
        isinstance(e, dict) and e.get("url") == ACCESS_SCOPE_EXTENSION and e.get("valueCode") == "county"
        for e in organization.get("extension") or ()
    )


def _walk(node: object, path: str) -> list:
    """The values at a dotted element path, lists flattened (``participant.member``)."""
    found = [node]
    for name in path.split("."):
        step = []
        for item in found:
            value = item.get(name) if isinstance(item, dict) else None
            if isinstance(value, list):
                step += value
            elif value is not None:
                step.append(value)
        found = step
    return found


__all__ = [
    "ACCESS_SCOPE_EXTENSION", "AccessPolicy", "View", "act_as", "acting", "compartment_params", "may_read",
    "require_read",
]
