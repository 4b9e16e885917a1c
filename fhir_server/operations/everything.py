"""``Patient/[id]/$everything``: the patient and everything in their compartment.

Implements http://hl7.org/fhir/OperationDefinition/Patient-everything (R4/R4B).

Membership follows the Patient CompartmentDefinition of ``hl7.fhir.r4b.core@4.3.0``, vendored
in ``profiles/fhir-r4b/compartment-patient.json`` by ``profiles/vendor_compartment.py``: a
resource is in the compartment when one of the reference search parameters the definition
lists for its type points at ``Patient/<id>``. Membership is one SQL query over the reference
index (``idx_reference`` rows with ``target_type='Patient'``, ``target_id=<id>`` and the
compartment parameters' keys); nothing is loaded that is not returned.

The answer is a searchset Bundle, paged by ``_count``/``_offset`` (next links) over the order:
the patient first, then by resource type and row key. Each page also carries, as
``search.mode = include``, the shared resources its entries refer to (Organization,
Practitioner, PractitionerRole, Location, Medication, HealthcareService; one level, not
patient-specific, so not compartment members themselves).

Parameters:

- ``_type``: comma-separated resource types; applies to members, the patient and the included
  shared resources alike (``_type=Observation`` returns Observations only).
- ``_since``: only resources whose ``meta.lastUpdated`` is at or after the instant.
- ``start`` / ``end``: care dates. A resource whose type has a clinical date parameter (see
  ``CLINICAL_DATES``: ``date`` for most, ``onset-date``/``recorded-date`` for Condition,
  ``authoredon`` for MedicationRequest, ...) is returned only when one of its dates overlaps
  [start, end]; one with no such date is left out. Types without a clinical date (Patient,
  RelatedPerson, Group) are not filtered.
- ``_count`` (default: the server's page size), ``_offset``.

An unknown patient is 404, a deleted one 410; so is a patient outside the caller's access
scope. Members and shared resources are limited to the caller's scope in the SQL (a patient's
compartment can hold resources that also belong to another patient, e.g. a Group), and types
the caller may not read (AuditEvent without an auditor scope) are left out.
"""

from __future__ import annotations

from sqlalchemy import and_, case, exists, func, literal, or_, select, union

from fhir_server.api.http import FhirRequest, FhirResponse
from fhir_server.auth.access import View, compartment_params
from fhir_server.errors import InvalidRequest
from fhir_server.operations.parameters import operation_parameters
from fhir_server.search.parse import SearchRequest
from fhir_server.server import Server
from fhir_server.services.search import SearchResult, searchset_bundle
from fhir_server.storage.index.date import parse_range
from fhir_server.storage.schema import INDEX_TABLES, resource

# Referenced resources that are not patient-specific, returned with the members that use them.
SHARED_TYPES = ("Organization", "Practitioner", "PractitionerRole", "Location", "Medication",
                "HealthcareService")

# The date parameters that say when care happened, for ``start``/``end`` (default: ``date``).
CLINICAL_DATES: dict[str, tuple[str, ...]] = {
    "Condition": ("onset-date", "recorded-date"),
    "Goal": ("start-date",),
    "MedicationAdministration": ("effective-time",),
    "MedicationDispense": ("whenhandedover",),
    "MedicationRequest": ("authoredon",),
    "MedicationStatement": ("effective",),
    "Provenance": ("recorded",),
    "QuestionnaireResponse": ("authored",),
    "ServiceRequest": ("authored", "occurrence"),
    "Specimen": ("collected",),
    "Patient": (),
    "RelatedPerson": (),
    "Group": (),
}


def handle(server: Server, request: FhirRequest) -> FhirResponse:
    patient_id = request.path_params["id"]
    params = operation_parameters(request)
    types = _types(server, params.csv("_type"))
    since = _instant(params.text("_since"), "_since", low=True)
    start = _instant(params.text("start"), "start", low=True)
    end = _instant(params.text("end"), "end", low=False)
    settings = server.settings
    count = min(params.integer("_count", settings.default_page_size), settings.max_page_size)
    offset = params.integer("_offset", 0)

    with server.db.read() as conn:
        patient = server.resources.read_stored("Patient", patient_id, conn=conn, identity=request.identity)  # 404 / 410
        view = server.access.view(conn, request.identity)
        members = _members(server, view, patient.pid, patient_id, types, since, start, end)
        first = case((resource.c.pid == patient.pid, 0), else_=1)
        page = conn.execute(
            members.order_by(first, resource.c.res_type, resource.c.pid).limit(count + 1).offset(offset)
        ).all()
        has_next = len(page) > count
        pids = [row.pid for row in page[:count]]
        total = conn.execute(select(func.count()).select_from(members.subquery())).scalar_one()
        by_pid = server.store.current_by_pids(conn, pids)
        matches = [by_pid[p] for p in pids if p in by_pid]
        included = _shared(server, conn, view, matches, types)

    server.audit.read(request.identity, "operation", [(s.res_type, s.res_id) for s in (*matches, *included)],
                      query=f"Patient/{patient_id}/$everything")
    result = SearchResult(SearchRequest("Patient", count=count, offset=offset), matches, included, total, has_next)
    path = f"Patient/{patient_id}/$everything"
    return FhirResponse(200, searchset_bundle(result, request.base_url, path, params.query_pairs()))


def _members(server: Server, view: View, patient_pid: int, patient_id: str, types: set[str] | None,
             since, start, end):
    """select(pid, res_type) of the live compartment members, the patient included."""
    refs = INDEX_TABLES["reference"]
    keys = []
    for rtype, codes in compartment_params(server.settings.profiles_dir).items():
        if rtype not in server.registry.supported_types or (types is not None and rtype not in types):
            continue
        if not view.may_read(rtype):
            continue
        keys += [k for k in (server.keys.lookup(rtype, code) for code in codes) if k is not None]
    candidates = [select(literal(patient_pid).label("pid"))] if types is None or "Patient" in types else []
    if keys:
        candidates.append(
            select(refs.c.pid.label("pid")).where(
                refs.c.target_id == patient_id, refs.c.target_type == "Patient", refs.c.sp.in_(keys),
            )
        )
    if not candidates:
        candidates = [select(literal(-1).label("pid"))]
    pid_set = union(*candidates) if len(candidates) > 1 else candidates[0]

    conditions = [resource.c.pid.in_(pid_set), resource.c.deleted.is_(False)]
    scope = view.rows(resource)
    if scope is not None:
        conditions.append(scope)
    if types is not None:
        conditions.append(resource.c.res_type.in_(sorted(types)))
    if since is not None:
        conditions.append(resource.c.last_updated >= since)
    if start is not None or end is not None:
        conditions.append(_care_dates(server, types, start, end))
    return select(resource.c.pid, resource.c.res_type).where(and_(*conditions))


def _care_dates(server: Server, types: set[str] | None, start, end):
    """Resources of a type with clinical dates need one overlapping [start, end]."""
    dates = INDEX_TABLES["date"]
    dated_types, keys = [], []
    for rtype in compartment_params(server.settings.profiles_dir):
        if rtype not in server.registry.supported_types or (types is not None and rtype not in types):
            continue
        codes = CLINICAL_DATES.get(rtype, ("date",))
        codes = tuple(c for c in codes if (p := server.registry.get(rtype, c)) is not None and p.type == "date")
        if not codes:
            continue
        dated_types.append(rtype)
        keys += [k for k in (server.keys.lookup(rtype, c) for c in codes) if k is not None]
    overlap = [dates.c.pid == resource.c.pid, dates.c.sp.in_(keys or [-1])]
    if start is not None:
        overlap.append(dates.c.high >= start)
    if end is not None:
        overlap.append(dates.c.low <= end)
    return or_(resource.c.res_type.not_in(dated_types or ["-"]), exists().where(and_(*overlap)))


def _shared(server: Server, conn, view: View, matches, types: set[str] | None):
    """The shared resources (Organization, Practitioner, ...) the page's members refer to."""
    wanted = [t for t in SHARED_TYPES if t in server.registry.supported_types and (types is None or t in types)]
    if not matches or not wanted:
        return []
    refs = INDEX_TABLES["reference"]
    pairs: set[tuple[str, str]] = set()
    pids = [m.pid for m in matches]
    for start in range(0, len(pids), 500):
        query = select(refs.c.target_type, refs.c.target_id).where(
            refs.c.pid.in_(pids[start:start + 500]), refs.c.target_type.in_(wanted),
            refs.c.target_id.is_not(None),
        ).distinct()
        pairs.update((row.target_type, row.target_id) for row in conn.execute(query))
    seen = {m.pid for m in matches}
    found = [s for s in server.search.by_type_id(conn, pairs, view) if s.pid not in seen]
    return sorted(found, key=lambda s: (s.res_type, s.res_id))


def _types(server: Server, names: list[str] | None) -> set[str] | None:
    if names is None:
        return None
    unknown = [n for n in names if n not in server.registry.supported_types]
    if unknown:
        raise InvalidRequest(f"_type names unsupported resource type(s): {', '.join(unknown)}")
    return set(names)


def _instant(text: str | None, name: str, *, low: bool):
    if text is None:
        return None
    try:
        lower, upper = parse_range(text)
    except ValueError:
        raise InvalidRequest(f"{name} must be a FHIR date, dateTime or instant, not {text!r}") from None
    return lower if low else upper
