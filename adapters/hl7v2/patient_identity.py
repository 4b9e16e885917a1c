"""Who a message is about: the patient's identifiers and the stored Patient they name.

Rules (issue 5, item 4):

- The resident ID number (居民身份证, GB 11643) is taken wherever the sender puts it: a PID-3
  repetition whose type (CX-5) identifier-types.csv calls ``resident-id``, PID-19 or PID-20.
  Only an ID with a correct check character is used (system ``urn:oid:2.16.156.10011.1.3``);
  a wrong one is reported (102) and ignored.
- Facility numbers (MRN) get a system per facility: the sender's ``mrn_system``, else the
  assigning authority PID-3.4 (an ISO OID, or its namespace), else MSH-4; the facility is the
  assigner.
- Matching: resident ID first, then health-record number, then MRN; a Patient that was merged
  into another (``active: false`` with a ``replaced-by`` link) leads to the survivor. Name and
  birth date are never used to match.
- Conflicts are errors (205, AE), never merges: two different resident IDs in one PID, or a
  stored patient found by MRN whose resident ID differs from the one sent (``patients.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from adapters.hl7v2.context import MappingContext
from adapters.hl7v2.datatypes import datatype_map, identifier_from_cx
from adapters.hl7v2.parsing import Segment
from fhir_server.auth.identity import SYSTEM
from fhir_server.identifiers import is_valid_resident_id

__all__ = ["RESIDENT_ID", "HEALTH_RECORD", "PatientMatch", "find_patient", "ranked", "patient_identifiers"]

RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"
HEALTH_RECORD = "urn:oid:2.16.156.10011.1.2"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
_HEALTH_RECORD = re.compile(r"^[0-9]{9}(0[0-9][1-9]|0[1-9]0|1[0-9][1-9]|1[1-9]0)[0-9]{5}$")
_RANK = {RESIDENT_ID: 0, HEALTH_RECORD: 1}
MAX_LINKS = 5


def resident_identifier(value: str) -> dict:
    return {"use": "official", "type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "NI"}], "text": "居民身份证"},
            "system": RESIDENT_ID, "value": value}


def _identifier(role: str, segment: Segment, field: int, repetition: int, context: MappingContext) -> dict | None:
    value = segment.get(field, 1, repetition=repetition).strip()
    if not value:
        return None
    if role == "resident-id":
        value = value.upper()
        if not is_valid_resident_id(value):
            context.warn(segment, field, "102", f"{segment.id}-{field} resident ID number (repetition {repetition}) "
                         "fails the GB 11643 check; not used to identify the patient")
            return None
        return resident_identifier(value)
    if role == "health-record-number":
        if not _HEALTH_RECORD.match(value):
            context.warn(segment, field, "102", f"{segment.id}-{field} health-record number (repetition "
                         f"{repetition}) is not 17 digits of county, township, village and serial; not used")
            return None
        return {"use": "usual", "type": {"text": "健康档案编号"}, "system": HEALTH_RECORD, "value": value}
    if role == "mrn":
        found = identifier_from_cx(segment, field, repetition, context, "mrn")
        system = context.setting("mrn_system") or found["system"]
        identifier = {"use": "usual", "type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "MR"}]},
                      "system": system, "value": value}
        if context.organization:
            identifier["assigner"] = {"reference": context.organization["reference"]}
        return identifier
    return None


@datatype_map("PatientIdentifiers")
def patient_identifiers(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> list[dict] | None:
    """PID-3 by identifier type; PID-19 / PID-20 hold a resident ID when they hold anything."""
    found = []
    if field == 3:
        for repetition in range(1, len(segment.fields[3]) + 1 if len(segment.fields) > 3 else 1):
            id_type = segment.get(3, 5, repetition=repetition).strip()
            row = context.lookup("identifier-types", id_type)
            if row is None:
                context.warn(segment, 3, "103", f"PID-3 identifier type {id_type!r} (repetition {repetition}) is not "
                             "in identifier-types.csv; not used")
                continue
            identifier = _identifier(row["role"], segment, 3, repetition, context)
            if identifier:
                found.append(identifier)
    elif segment.get(field).strip():
        identifier = _identifier("resident-id", segment, field, 1, context)
        if identifier:
            found.append(identifier)
    return found or None


def unique_identifiers(identifiers: list[dict]) -> list[dict]:
    seen, result = set(), []
    for identifier in identifiers:
        key = (identifier["system"], identifier["value"])
        if key not in seen:
            seen.add(key)
            result.append(identifier)
    return result


def ranked(identifiers: list[dict]) -> list[dict]:
    """The identifiers to match on, best first: resident ID, health-record number, then MRNs."""
    return sorted(identifiers, key=lambda i: _RANK.get(i["system"], 2))


@dataclass
class PatientMatch:
    id: str
    resource: dict
    matched_on: dict  # the identifier that found it
    followed: list[str]  # ids of merged records passed on the way to the survivor


def find_patient(server, identifiers: list[dict], context: MappingContext | None = None,
                 follow_links: bool = True) -> PatientMatch | None:
    """The stored Patient the identifiers name (resident ID first), following merges."""
    if server is None:
        return None
    with server.db.read() as conn:
        named = _named_by_any(server, conn, identifiers)
        for identifier in ranked(identifiers):
            if named is None:
                pairs = [("identifier", f"{identifier['system']}|{identifier['value']}")]
                ids = server.search.find_ids(conn, "Patient", pairs, SYSTEM)
            else:
                ids = [i for i, resource in named.items() if _carries(resource, identifier)]
            if not ids:
                continue
            matches = []
            for patient_id in sorted(ids):
                resource = (named or {}).get(patient_id) or server.resources.read("Patient", patient_id, conn,
                                                                                   identity=SYSTEM)
                followed: list[str] = []
                while follow_links and len(followed) < MAX_LINKS:
                    survivor = _replaced_by(resource)
                    if survivor is None:
                        break
                    followed.append(resource["id"])
                    resource = server.resources.read("Patient", survivor, conn, identity=SYSTEM)
                matches.append(PatientMatch(resource["id"], resource, identifier, followed))
            distinct = {m.id: m for m in matches}
            if len(distinct) > 1 and context is not None:
                context.warn("PID", 3, "205", f"{len(distinct)} stored patients share one identifier "
                             f"({identifier['system']}); the first active one is used")
            active = [m for m in distinct.values() if m.resource.get("active", True)]
            return (active or list(distinct.values()))[0]
    return None


def _named_by_any(server, conn, identifiers: list[dict]) -> dict[str, dict] | None:
    """One search for all the identifiers at once: {} when no patient has any of them, the one
    patient that has some, or None when that does not settle it (several patients, or values
    the search syntax would split): then each identifier is searched on its own, best first."""
    tokens = [f"{i['system']}|{i['value']}" for i in identifiers]
    if any("," in t or "\\" in t for t in tokens):
        return None
    ids = server.search.find_ids(conn, "Patient", [("identifier", ",".join(tokens))], SYSTEM)
    if len(ids) > 1:
        return None
    return {i: server.resources.read("Patient", i, conn, identity=SYSTEM) for i in ids}


def _carries(resource: dict, identifier: dict) -> bool:
    return any(i.get("system") == identifier["system"] and i.get("value") == identifier["value"]
               for i in resource.get("identifier") or [])


def _replaced_by(resource: dict) -> str | None:
    for link in resource.get("link") or []:
        reference = (link.get("other") or {}).get("reference", "")
        if link.get("type") == "replaced-by" and reference.startswith("Patient/"):
            return reference.split("/", 1)[1]
    return None
