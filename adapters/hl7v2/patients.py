"""PID -> Patient, PV1 -> Encounter, MRG -> a merge: the patient-administration side.

- A lab or referral message refers to the stored Patient its identifiers name (following
  merges), or creates one (conditional create on the best identifier).
- An ADT message updates the stored Patient: demographics replaced by what PID sends,
  identifiers added (never removed), everything else (extensions, managing organisation,
  links) kept. A new patient is a conditional create.
- A40: the PID patient survives (``link`` type ``replaces``); the MRG patient gets
  ``active: false`` and a ``replaced-by`` link; every other resource that referred to the merged
  record (its encounters, results, referrals...) is written again pointing at the survivor, in
  the same transaction; later messages naming the old identifiers land on the survivor
  (``patient_identity.find_patient`` follows the link).
"""

from __future__ import annotations

import copy

from adapters.hl7v2.context import MappingContext
from adapters.hl7v2.datatypes import datatype_map, identifier_from_cx, xcn_reference
from adapters.hl7v2.parsing import Segment
from adapters.hl7v2.patient_identity import HEALTH_RECORD, RESIDENT_ID, find_patient, ranked, unique_identifiers
from adapters.hl7v2.segment_map import apply_segment_map
from adapters.hl7v2.transaction import TransactionBuilder, identifier_criteria
from fhir_server.auth.identity import SYSTEM
from fhir_server.fhir.references import map_references

__all__ = ["patient_from_pid", "patient_reference", "upsert_patient", "encounter_from_pv1", "merge_patients"]

COUNTY_PATIENT = "https://county-fhir.example.org/fhir/StructureDefinition/county-patient"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_DEMOGRAPHICS = ("name", "gender", "birthDate", "address", "telecom", "deceasedDateTime")


def patient_from_pid(pid: Segment, context: MappingContext) -> dict:
    patient = apply_segment_map("PID.Patient", pid, context, {"resourceType": "Patient"})
    patient["identifier"] = _one_per_person_system(pid, unique_identifiers(patient.get("identifier", [])), context)
    patient.setdefault("gender", "unknown")
    patient["active"] = True
    if context.organization:
        patient["managingOrganization"] = {"reference": context.organization["reference"]}
    return patient


def _one_per_person_system(pid: Segment, identifiers: list[dict], context: MappingContext) -> list[dict]:
    """A person has one resident ID and one health-record number: two different ones in one PID
    cannot both be right, so the patient cannot be identified (error 205)."""
    for system in (RESIDENT_ID, HEALTH_RECORD):
        values = {i["value"] for i in identifiers if i["system"] == system}
        if len(values) > 1:
            context.problem(pid, 3, "205", "E", f"PID carries {len(values)} different numbers of {system} "
                            "(PID-3, PID-19, PID-20): the patient cannot be identified")
    return identifiers


def _conflicts(pid: Segment, incoming: dict, match, context: MappingContext) -> bool:
    """The stored patient found (by MRN) has another resident ID / health-record number than PID:
    two people, or a wrong number; never merged silently."""
    for system in (RESIDENT_ID, HEALTH_RECORD):
        sent = {i["value"] for i in incoming["identifier"] if i["system"] == system}
        stored = {i.get("value") for i in match.resource.get("identifier", []) if i.get("system") == system}
        if sent and stored and not sent & stored:
            context.problem(pid, 3, "205", "E", f"The stored patient matched on {match.matched_on['system']} has "
                            f"another number of {system} than this message: not merged; fix the sender's record")
            return True
    return False


def _claim_profile(patient: dict) -> dict:
    """Claim county-patient when the resource has what the profile requires."""
    meta = patient.get("meta") or {}
    profiles = [p for p in meta.get("profile", []) if p != COUNTY_PATIENT]
    fits = (patient.get("identifier") and patient.get("name") and patient.get("gender") and patient.get("birthDate")
            and patient.get("managingOrganization")
            and all(i.get("assigner") for i in patient["identifier"] if _is_mrn(i)))
    if fits:
        profiles.append(COUNTY_PATIENT)
    if profiles:
        patient["meta"] = {**meta, "profile": profiles}
    else:
        patient.pop("meta", None)
    return patient


def _is_mrn(identifier: dict) -> bool:
    return any(c.get("code") == "MR" for c in (identifier.get("type") or {}).get("coding", []))


def _identifiers_or_error(pid: Segment, patient: dict, context: MappingContext) -> bool:
    if patient["identifier"]:
        return True
    context.problem(pid, 3, "101", "E", "PID-3 names no usable patient identifier (resident ID or facility "
                    "number); the patient cannot be identified")
    return False


def patient_reference(pid: Segment, context: MappingContext, builder: TransactionBuilder) -> dict | None:
    """The reference results are filed under: the stored patient, else a conditional create."""
    patient = patient_from_pid(pid, context)
    if not _identifiers_or_error(pid, patient, context):
        return None
    match = find_patient(context.server, patient["identifier"], context)
    if match is not None and _conflicts(pid, patient, match, context):
        return None
    if match is not None:
        return {"reference": f"Patient/{match.id}"}
    best = ranked(patient["identifier"])[0]
    full_url = builder.add(_claim_profile(patient), "POST", "Patient", if_none_exist=identifier_criteria(best))
    return {"reference": full_url}


def upsert_patient(pid: Segment, context: MappingContext, builder: TransactionBuilder) -> dict | None:
    """ADT: update the stored patient with PID, or create it; returns the reference."""
    incoming = patient_from_pid(pid, context)
    if not _identifiers_or_error(pid, incoming, context):
        return None
    match = find_patient(context.server, incoming["identifier"], context)
    if match is not None and _conflicts(pid, incoming, match, context):
        return None
    if match is None:
        best = ranked(incoming["identifier"])[0]
        full_url = builder.add(_claim_profile(incoming), "POST", "Patient", if_none_exist=identifier_criteria(best))
        return {"reference": full_url}
    full_url = builder.add(_merged_demographics(match.resource, incoming), "PUT", f"Patient/{match.id}")
    return {"reference": full_url}


def _merged_demographics(stored: dict, incoming: dict) -> dict:
    patient = copy.deepcopy(stored)
    patient.pop("meta", None)
    for element in _DEMOGRAPHICS:
        if element in incoming and (element != "gender" or incoming[element] != "unknown" or "gender" not in patient):
            patient[element] = incoming[element]
    patient["identifier"] = unique_identifiers([*patient.get("identifier", []), *incoming["identifier"]])
    patient.setdefault("managingOrganization", incoming.get("managingOrganization"))
    if patient.get("managingOrganization") is None:
        patient.pop("managingOrganization")
    profiles = [p for p in (stored.get("meta") or {}).get("profile", []) if p != COUNTY_PATIENT]
    if profiles:
        patient["meta"] = {"profile": profiles}
    return _claim_profile(patient)


# ---- PV1 -> Encounter ---------------------------------------------------------------------
@datatype_map("PatientClass")
def patient_class(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> dict | None:
    value = segment.get(field).strip()
    row = context.lookup("patient-class", value) if value else None
    if row is None or not row["class"]:
        return None
    return {"system": ACT_CODE, "code": row["class"], "display": row["display"]}


@datatype_map("EncounterParticipant")
def encounter_participants(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> list | None:
    people = []
    for repetition in range(1, len(segment.fields[field]) + 1 if field < len(segment.fields) else 1):
        reference = xcn_reference(segment, field, context, repetition)
        if reference:
            people.append({"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                                 "code": "ATND", "display": "attender"}]}],
                           "individual": reference})
    return people or None


@datatype_map("VisitNumber")
def visit_number(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> dict | None:
    return identifier_from_cx(segment, field, 1, context, "visit-number")


def encounter_from_pv1(pv1: Segment, subject: dict, context: MappingContext,
                       builder: TransactionBuilder) -> dict | None:
    """An Encounter for a PV1 naming a visit (PV1-19) of a class other than N / U; its
    reference (the visit's results point at it), or None when the PV1 names no visit."""
    encounter = apply_segment_map("PV1.Encounter", pv1, context, {"resourceType": "Encounter"})
    if "class" not in encounter or not encounter.get("identifier"):
        if pv1.get(2).strip() not in ("", "N", "U"):
            context.warn(pv1, 19, "101", "PV1-19 (visit number) is empty: no Encounter is written for this visit")
        return None
    encounter["status"] = "finished" if encounter.get("period", {}).get("end") else "in-progress"
    encounter["subject"] = subject
    if context.organization:
        encounter["serviceProvider"] = {"reference": context.organization["reference"]}
    return {"reference": builder.add(encounter, "PUT",
                                     f"Encounter?{identifier_criteria(encounter['identifier'][0])}")}


# ---- A40 merge ----------------------------------------------------------------------------
def merge_patients(pid: Segment, mrg: Segment, context: MappingContext, builder: TransactionBuilder) -> None:
    """PID names the surviving patient, MRG-1 (and MRG-4) the record merged into it."""
    survivor_ref = None
    old_identifiers = _mrg_identifiers(mrg, context)
    if not old_identifiers:
        context.problem(mrg, 1, "101", "E", "MRG-1 names no prior patient identifier to merge")
        return
    merged = find_patient(context.server, old_identifiers, context, follow_links=False)
    survivor = find_patient(context.server, patient_from_pid(pid, context)["identifier"], context)
    already = merged is not None and survivor is not None and (
        merged.id == survivor.id or any(link.get("type") == "replaced-by" and
                                        (link.get("other") or {}).get("reference") == f"Patient/{survivor.id}"
                                        for link in merged.resource.get("link", [])))
    if already:
        context.warn(mrg, 1, "205", "The prior patient is already merged into the surviving patient; nothing to do")
        upsert_patient(pid, context, builder)
        return
    survivor_ref = upsert_patient(pid, context, builder)
    if survivor_ref is None:
        return
    if merged is None:
        context.warn(mrg, 1, "204", "No stored patient has the prior identifiers of MRG-1; only the surviving "
                     "patient was updated")
        return
    survivor_entry = builder.resource(survivor_ref["reference"])
    links = [link for link in survivor_entry.get("link", [])
             if (link.get("other") or {}).get("reference") != f"Patient/{merged.id}"]
    survivor_entry["link"] = [*links, {"other": {"reference": f"Patient/{merged.id}"}, "type": "replaces"}]
    old = copy.deepcopy(merged.resource)
    old.pop("meta", None)
    old["active"] = False
    old["link"] = [*(link for link in old.get("link", []) if link.get("type") != "replaced-by"),
                   {"other": {"reference": survivor_ref["reference"]}, "type": "replaced-by"}]
    profiles = (merged.resource.get("meta") or {}).get("profile")
    if profiles:
        old["meta"] = {"profile": profiles}
    builder.add(old, "PUT", f"Patient/{merged.id}")
    _repoint(f"Patient/{merged.id}", survivor_ref["reference"], context, builder)


# What a merge leaves pointing at the merged record: the patients' own links, and the records of
# what happened (a Provenance names the versions it wrote, an AuditEvent what was accessed).
_KEPT_ON_MERGE = {"Patient", "Provenance", "AuditEvent"}


def _repoint(merged: str, survivor: str, context: MappingContext, builder: TransactionBuilder) -> None:
    """Every other resource that refers to the merged patient is written again pointing at the
    survivor, in the merge's transaction, each only if it is still the version read here (a
    resource changed meanwhile fails the message, which can then be replayed)."""
    def to_survivor(reference: str) -> str:  # relative or absolute
        return survivor if reference == merged or reference.endswith("/" + merged) else reference

    rtype, rid = merged.split("/")
    for stored in context.server.resources.referring(rtype, rid, identity=SYSTEM):
        if stored.res_type in _KEPT_ON_MERGE:
            continue
        resource = map_references(stored.json(), to_survivor)
        builder.add(resource, "PUT", f"{stored.res_type}/{stored.res_id}", if_match=f'W/"{stored.version}"')


def _mrg_identifiers(mrg: Segment, context: MappingContext) -> list[dict]:
    """MRG-1 (prior patient identifier list, typed like PID-3) and MRG-4 (prior patient ID)."""
    from adapters.hl7v2.patient_identity import patient_identifiers

    as_pid = Segment("PID", [mrg.fields[0], [], [], mrg.fields[1] if len(mrg.fields) > 1 else []], mrg.sequence)
    found = patient_identifiers(as_pid, 3, context, "") or []
    if len(mrg.fields) > 4 and mrg.get(4).strip():
        as_pid.fields[3] = mrg.fields[4]
        found += patient_identifiers(as_pid, 3, context, "") or []
    return unique_identifiers(found)
