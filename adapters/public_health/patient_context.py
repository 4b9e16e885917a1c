"""What the store already knows around a follow-up record: the patient and their care.

``gather(server, conn, record, identity)`` finds, with the caller's access scope:

* the patient, by resident ID (身份证号) and else by health-record number (健康档案编号);
* their managing organisation (the village clinic or township centre) and the responsible
  township centre: the managing organisation itself when it is a township centre (its
  division code ends in ``000``, or it has no parent), else its parent (``partOf``), as
  ``fhir_server/demo/network.py`` models the county;
* the doctor's PractitionerRole (the patient's general practitioner, else a role at the
  managing organisation);
* the Condition of the record's disease, the active chronic-disease CarePlan and the
  follow-up Goal the importer keeps;
* the follow-up Encounter already recorded for that patient, day and disease (ours, or one
  another system wrote);
* referrals (ServiceRequest) of the patient authored from 14 days before the visit on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Connection

from adapters.public_health.follow_up_record import FollowUpRecord, RecordError
from fhir_server.auth.identity import Identity
from fhir_server.demo import codes
from fhir_server.errors import FhirError
from fhir_server.fhir.models import is_valid_id

__all__ = ["PatientContext", "gather", "search_resources", "OrganizationCache", "ImportCache"]

REFERRAL_CATEGORY = ("http://snomed.info/sct", "3457005")
# ICD-10 codes whose Condition is "the record's disease"
CONDITION_PREFIXES = {"hypertension": ("I10", "I11", "I12", "I13", "I15"), "diabetes": ("E11",)}
REFERRAL_LOOKBACK_DAYS = 14
FOLLOW_UP_TYPES = {codes.ENCOUNTER_TYPES[kind][0] for kind in (codes.HYPERTENSION, codes.DIABETES)}


@dataclass
class PatientContext:
    patient: dict
    managing_organization: dict | None
    township: dict | None
    doctor_role: str | None  # "PractitionerRole/id"
    doctor_name: str | None  # the name of doctor_role's Practitioner
    condition: dict | None
    care_plan: dict | None
    existing_encounter: dict | None  # a follow-up Encounter of that day and disease
    referrals: list[dict] = field(default_factory=list)

    @property
    def patient_ref(self) -> str:
        return f"Patient/{self.patient['id']}"

    def identifier(self, system: str) -> str | None:
        return next((i.get("value") for i in self.patient.get("identifier", [])
                     if i.get("system") == system), None)


class OrganizationCache:
    """The county's organisations, doctors' roles and practitioners by reference, read once per
    import (they rarely change during one); ``read_all`` reads many with one search per type."""

    CHUNK = 100  # ids or references per search

    def __init__(self) -> None:
        self._by_ref: dict[str, dict | None] = {}  # "Type/id" -> the resource, None when not found
        self._roles_at: dict[str, str | None] = {}  # Organization/id -> a PractitionerRole there

    def read_all(self, server, conn: Connection, refs: Iterable[str], identity: Identity) -> None:
        """Read the resources ``refs`` name ("Type/id") that are not read yet."""
        wanted: dict[str, set[str]] = {}
        for ref in refs:
            rtype, _, rid = ref.partition("/")
            if ref in self._by_ref:
                continue
            if is_valid_id(rid):
                wanted.setdefault(rtype, set()).add(rid)
            else:
                self._by_ref[ref] = None
        for rtype, ids in wanted.items():
            for chunk in _chunks(sorted(ids), self.CHUNK):
                found = {r["id"]: r for r in search_resources(server, conn, rtype, [("_id", ",".join(chunk))],
                                                              identity, len(chunk))}
                self._by_ref.update((f"{rtype}/{rid}", found.get(rid)) for rid in chunk)

    def read(self, server, conn: Connection, ref: str, identity: Identity) -> dict | None:
        self.read_all(server, conn, [ref], identity)
        return self._by_ref[ref]

    def get(self, server, conn: Connection, ref: str | None, identity: Identity) -> dict | None:
        """The Organization ``ref`` names, None when the caller sees none."""
        if not ref or not ref.startswith("Organization/"):
            return None
        return self.read(server, conn, ref, identity)

    def doctor_name(self, server, conn: Connection, ref: str | None, identity: Identity) -> str | None:
        """The name of the Practitioner of a PractitionerRole (or Practitioner) reference."""
        target = ref or ""
        if target.startswith("PractitionerRole/"):
            role = self.read(server, conn, target, identity) or {}
            target = _reference(role.get("practitioner"))
        if not target.startswith("Practitioner/"):
            return None
        found = self.read(server, conn, target, identity)
        if not found or not found.get("name"):
            return None
        first = found["name"][0]
        return first.get("text") or (first.get("family", "") + "".join(first.get("given", [])))

    def role_at(self, server, conn: Connection, organization: dict, identity: Identity) -> str | None:
        """A PractitionerRole at ``organization`` (the doctor of a patient who names none)."""
        ref = f"Organization/{organization['id']}"
        if ref not in self._roles_at:
            roles = search_resources(server, conn, "PractitionerRole", [("organization", ref)], identity, 1)
            self._roles_at[ref] = f"PractitionerRole/{roles[0]['id']}" if roles else None
        return self._roles_at[ref]


def search_resources(server, conn: Connection, rtype: str, pairs: list[tuple[str, str]],
                     identity: Identity, limit: int = 1000) -> list[dict]:
    """Every match of a search (up to ``limit``), as resources, with the caller's access scope."""
    out: list[dict] = []
    offset = 0
    page = min(limit, server.settings.max_page_size)
    while len(out) < limit:
        request = server.search.parse(rtype, [*pairs, ("_count", str(page)), ("_offset", str(offset))])
        result = server.search.search(request, conn, identity=identity)
        out += [s.json() for s in result.matches]
        if not result.has_next:
            break
        offset += page
    return out[:limit]


class ImportCache(OrganizationCache):
    """What one import has learnt about the store, kept up to date with what it writes.

    ``prefetch`` reads, for all the records of a file at once (100 patients or references a
    search), the patients, their managing organisations (and the parents of those) and
    doctors, their Conditions, active CarePlans, Encounters of the file's period (with the
    Observations and MedicationStatements of the follow-ups among them: what a re-import
    compares with) and referrals; ``learn`` adds what each transaction wrote. A record of a
    patient not prefetched is looked up on its own. Another writer changing the same patients
    during the import is not seen (the writes stay consistent: they are by id).
    """

    def __init__(self) -> None:
        super().__init__()
        self.patients: dict[tuple[str, str], dict | None] = {}  # (system, value) -> Patient
        self.by_patient: dict[str, dict[str, list[dict]]] = {}  # Patient/id -> type -> resources
        self.window: tuple[str, str] | None = None  # the Encounter days prefetched
        self.named: dict[str, dict | None] = {}  # 转诊机构 text -> Organization
        self._of_visit: dict[str, list[dict]] = {}  # follow-up Encounter/id -> its Observations, ...

    def prefetch(self, server, conn: Connection, records: list[FollowUpRecord], identity: Identity) -> None:
        found = self.find_patients(server, conn, records, identity)
        days = [r.visit_date for r in records if r.visit_date]
        if not found or not days:
            return
        with contextlib.suppress(FhirError):  # what fails here is read, and reported, record by record
            self._prefetch_network(server, conn, list(found.values()), identity)
        first, last = min(days), max(days)
        since = (first - timedelta(days=REFERRAL_LOOKBACK_DAYS)).isoformat()
        self.window = (first.isoformat(), last.isoformat())
        refs = sorted(found)
        for ref in refs:
            self.by_patient[ref] = {"Condition": [], "CarePlan": [], "Encounter": [], "ServiceRequest": []}
        for chunk in _chunks(refs, self.CHUNK):
            subjects = ",".join(chunk)
            for rtype, extra in (("Condition", []), ("CarePlan", [("status", "active")]),
                                 ("Encounter", [("date", f"ge{first}"), ("date", f"le{last}")]),
                                 ("ServiceRequest", [("authored", f"ge{since}")])):
                for resource in search_resources(server, conn, rtype, [("subject", subjects), *extra], identity,
                                                 1_000_000):
                    self.learn_resource(resource)
        with contextlib.suppress(FhirError):
            self._prefetch_visits(server, conn, identity)

    def find_patients(self, server, conn: Connection, records: list[FollowUpRecord],
                      identity: Identity) -> dict[str, dict]:
        """Look up the records' patients not looked up yet (by resident ID and health-record
        number); returns those found, by reference."""
        wanted = {(codes.OID_RESIDENT_ID, r.resident_id) for r in records if r.resident_id}
        wanted |= {(codes.OID_HEALTH_RECORD, r.health_record_number) for r in records if r.health_record_number}
        wanted -= set(self.patients)
        for key in wanted:
            self.patients[key] = None
        found: dict[str, dict] = {}
        for chunk in _chunks(sorted(wanted), self.CHUNK):
            tokens = ",".join(f"{system}|{value}" for system, value in chunk)
            for patient in search_resources(server, conn, "Patient", [("identifier", tokens)], identity, 100_000):
                found[f"Patient/{patient['id']}"] = patient
                for ident in patient.get("identifier", []):
                    key = (ident.get("system"), ident.get("value"))
                    held = self.patients.get(key, _ABSENT)
                    if held is None or (held is not _ABSENT and held.get("id") == patient["id"]):
                        self.patients[key] = patient
                    elif held is not _ABSENT:
                        self.patients[key] = _SEVERAL
        return found

    def _prefetch_network(self, server, conn: Connection, patients: list[dict], identity: Identity) -> None:
        """The patients' managing organisations and their parents, doctors' roles and practitioners."""
        managing = [ref for p in patients if (ref := _reference(p.get("managingOrganization"))).startswith(
            "Organization/")]
        self.read_all(server, conn, managing, identity)
        parents = [_reference((self._by_ref[ref] or {}).get("partOf")) for ref in managing]
        self.read_all(server, conn, [ref for ref in parents if ref.startswith("Organization/")], identity)
        doctors = [ref for p in patients if (ref := _own_doctor(p))]
        self.read_all(server, conn, doctors, identity)
        practitioners = [_reference((self._by_ref[ref] or {}).get("practitioner")) for ref in doctors
                         if ref.startswith("PractitionerRole/")]
        self.read_all(server, conn, [ref for ref in practitioners if ref.startswith("Practitioner/")], identity)

    def _prefetch_visits(self, server, conn: Connection, identity: Identity) -> None:
        visits = sorted(f"Encounter/{e['id']}" for held in self.by_patient.values() for e in held["Encounter"]
                        if _is_follow_up(e))
        found: dict[str, list[dict]] = {ref: [] for ref in visits}
        for chunk in _chunks(visits, self.CHUNK):
            for rtype, param in (("Observation", "encounter"), ("MedicationStatement", "context")):
                for resource in search_resources(server, conn, rtype, [(param, ",".join(chunk))], identity,
                                                 1_000_000):
                    visit = found.get(_local(_reference(resource.get(param))))  # the element is named as param
                    if visit is not None:
                        visit.append(resource)
        self._of_visit.update(found)

    def learn(self, responses: list[dict]) -> None:
        """Take in what a transaction wrote (its response entries)."""
        for entry in responses:
            resource = entry.get("resource")
            if isinstance(resource, dict):
                self.learn_resource(resource)

    def learn_resource(self, resource: dict) -> None:
        rtype = resource.get("resourceType")
        subject = (resource.get("subject") or {}).get("reference")
        held = self.by_patient.get(subject or "")
        if held is None or rtype not in held:
            return
        items = held[rtype]
        for i, item in enumerate(items):
            if item.get("id") == resource.get("id"):
                items[i] = resource
                return
        items.append(resource)

    def held(self, patient_ref: str, rtype: str) -> list[dict] | None:
        """What the cache holds of ``rtype`` for the patient, None when it was not prefetched."""
        held = self.by_patient.get(patient_ref)
        return None if held is None else held.get(rtype)

    def visit_resources(self, encounter_ref: str) -> list[dict] | None:
        """The Observations and MedicationStatements prefetched for a follow-up Encounter, handed
        out once (None when not prefetched or handed out already): once the record of that visit
        is written they are out of date, and another record of the visit searches them again."""
        return self._of_visit.pop(encounter_ref, None)

    def covers(self, day: str) -> bool:
        return self.window is not None and self.window[0] <= day <= self.window[1]


_SEVERAL = {"resourceType": "Patient", "id": "", "several": True}
_ABSENT: dict = {}


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _reference(element: dict | None) -> str:
    return (element or {}).get("reference") or ""


def _local(reference: str) -> str:
    """``Type/id`` of a relative or absolute reference."""
    return "/".join(reference.split("/")[-2:])


def _is_follow_up(encounter: dict) -> bool:
    return any(c.get("code") in FOLLOW_UP_TYPES for t in encounter.get("type", []) for c in t.get("coding", []))


def gather(server, conn: Connection, record: FollowUpRecord, identity: Identity,
           organizations: OrganizationCache | None = None) -> PatientContext:
    cache = organizations if isinstance(organizations, ImportCache) else None
    organizations = organizations or OrganizationCache()
    patient = _patient(server, conn, record, identity, cache)
    pref = f"Patient/{patient['id']}"
    managing = organizations.get(server, conn, (patient.get("managingOrganization") or {}).get("reference"),
                                 identity)
    township = responsible_township(server, conn, managing, organizations, identity)
    doctor_role = _doctor_role(server, conn, patient, managing, organizations, identity)
    day = record.visit_date.isoformat()
    since = (record.visit_date - timedelta(days=REFERRAL_LOOKBACK_DAYS)).isoformat()
    if cache is not None and cache.held(pref, "Condition") is not None and cache.covers(day):
        conditions = cache.held(pref, "Condition")
        plans = [p for p in cache.held(pref, "CarePlan") if p.get("status") == "active"]
        encounters = cache.held(pref, "Encounter")
        referrals = [r for r in cache.held(pref, "ServiceRequest") if (r.get("authoredOn") or "")[:10] >= since]
    else:
        conditions = search_resources(server, conn, "Condition", [("subject", pref)], identity, 50)
        plans = search_resources(server, conn, "CarePlan", [("subject", pref), ("status", "active")], identity, 20)
        encounters = search_resources(server, conn, "Encounter",
                                      [("subject", pref), ("date", f"ge{day}"), ("date", f"le{day}")], identity, 50)
        referrals = search_resources(server, conn, "ServiceRequest",
                                     [("subject", pref), ("authored", f"ge{since}")], identity, 50)
    condition = next((c for c in conditions if _is_disease(c, record.kind)), None)
    plan = _care_plan(plans, condition)
    type_code = codes.ENCOUNTER_TYPES[record.kind][0]
    existing = next((e for e in encounters if (e.get("period") or {}).get("start", "")[:10] == day and any(
        c.get("code") == type_code for t in e.get("type", []) for c in t.get("coding", []))), None)
    referrals = [r for r in referrals if _is_referral(r)]
    doctor_name = organizations.doctor_name(server, conn, doctor_role, identity)
    return PatientContext(patient, managing, township, doctor_role, doctor_name, condition, plan, existing,
                          referrals)


def _patient(server, conn: Connection, record: FollowUpRecord, identity: Identity,
             cache: ImportCache | None = None) -> dict:
    tried = []
    for system, value, label in ((codes.OID_RESIDENT_ID, record.resident_id, "resident ID"),
                                 (codes.OID_HEALTH_RECORD, record.health_record_number,
                                  "health-record number")):
        if not value:
            continue
        if cache is not None and (system, value) in cache.patients:
            patient = cache.patients[(system, value)]
            found = [] if patient is None else [patient, patient] if patient is _SEVERAL else [patient]
        else:
            found = search_resources(server, conn, "Patient", [("identifier", f"{system}|{value}")], identity, 2)
        if len(found) > 1:
            raise RecordError(f"several patients have this {label}")
        if found:
            patient = found[0]
            other = record.health_record_number if system == codes.OID_RESIDENT_ID else None
            held = next((i.get("value") for i in patient.get("identifier", [])
                         if i.get("system") == codes.OID_HEALTH_RECORD), None)
            if other and held and other != held:
                raise RecordError("the resident ID and the health-record number belong to different records "
                                  f"(the patient with this resident ID has health-record number {held})")
            return patient
        tried.append(label)
    raise RecordError(f"no patient with this {' or '.join(tried)} is known to the server")


def responsible_township(server, conn: Connection, managing: dict | None, organizations: OrganizationCache,
                         identity: Identity) -> dict | None:
    """The township centre responsible for patients of ``managing`` (see the module docstring)."""
    if managing is None:
        return None
    division = _division_code(managing)
    parent_ref = (managing.get("partOf") or {}).get("reference")
    if (division and division.endswith("000")) or not parent_ref:
        return managing
    if division is None and not _is_village_clinic(managing):
        return managing
    return organizations.get(server, conn, parent_ref, identity) or managing


def _division_code(org: dict) -> str | None:
    for address in org.get("address", []):
        for ext in address.get("extension", []):
            if ext.get("url") == codes.ADDRESS_DIVISION_EXTENSION:
                return (ext.get("valueCoding") or {}).get("code")
    return None


def _is_village_clinic(org: dict) -> bool:
    return any("村" in (t.get("text") or "") for t in org.get("type", []))


def _doctor_role(server, conn: Connection, patient: dict, managing: dict | None, organizations: OrganizationCache,
                 identity: Identity) -> str | None:
    own = _own_doctor(patient)
    if own is None and managing is not None:
        return organizations.role_at(server, conn, managing, identity)
    return own


def _own_doctor(patient: dict) -> str | None:
    """The patient's general practitioner (a PractitionerRole or Practitioner reference)."""
    for gp in patient.get("generalPractitioner", []):
        ref = gp.get("reference") or ""
        if ref.startswith(("PractitionerRole/", "Practitioner/")):
            return ref
    return None


def _is_disease(condition: dict, kind: str) -> bool:
    prefixes = CONDITION_PREFIXES[kind]
    return any(c.get("system") == codes.ICD10 and str(c.get("code", "")).startswith(prefixes)
               for c in (condition.get("code") or {}).get("coding", []))


def _care_plan(plans: list[dict], condition: dict | None) -> dict | None:
    chronic = [p for p in plans if any(c.get("code") == "chronic-disease-management"
                                      for cat in p.get("category", []) for c in cat.get("coding", []))]
    if condition is not None:
        target = f"Condition/{condition['id']}"
        for plan in chronic:
            if any(a.get("reference") == target for a in plan.get("addresses", [])):
                return plan
    return chronic[0] if chronic else None


def _is_referral(request: dict) -> bool:
    return request.get("status") in ("active", "draft", "on-hold", "completed") and any(
        (c.get("system"), c.get("code")) == REFERRAL_CATEGORY
        for cat in request.get("category", []) for c in cat.get("coding", []))
