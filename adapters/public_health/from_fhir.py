"""Stored FHIR resources -> follow-up records, whatever system wrote them.

A follow-up is an Encounter typed ``hypertension-follow-up`` or ``diabetes-follow-up``
(``chronic-disease-encounter-type``); an Encounter with both types (one visit for both
diseases, as the demo writes them) gives one record per form. The record is read from:

* the Encounter: date, visit mode, classification, next visit, medication compliance,
  lifestyle, doctor (participant display, else the Practitioner's name);
* the Patient: name, resident ID, health-record number;
* the Observations of the Encounter (by LOINC code, or the follow-up item codes this
  adapter writes): blood pressure, weight, BMI, heart rate, fasting glucose (mg/dL is
  converted to mmol/L), HbA1c, symptoms, foot pulse, hypoglycaemia, adverse reaction,
  staple food, other signs, auxiliary exams;
* the MedicationStatements of the Encounter (insulin by ATC A10A);
* the visit's Goal (targets) and the referral ServiceRequest of the visit.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Connection

from adapters.public_health.follow_up_bundle import (
    ATC,
    ITEM_SYSTEM,
    ML_PER_LIANG,
    RECORD_SYSTEM,
    resource_id,
)
from adapters.public_health.follow_up_record import KINDS, FollowUpRecord, Medication
from adapters.public_health.patient_context import REFERRAL_CATEGORY, search_resources
from fhir_server.auth.identity import SYSTEM, Identity
from fhir_server.demo import codes

__all__ = ["from_fhir", "kinds_of", "read_observation", "FOLLOW_UP_TYPES"]

FOLLOW_UP_TYPES = {codes.ENCOUNTER_TYPES[k][0]: k for k in KINDS}
_LOINC_FIELDS = {"29463-7": "weight_kg", "39156-5": "bmi", "8867-4": "heart_rate", "4548-4": "hba1c"}
_GLUCOSE_MMOL, _GLUCOSE_MG = "14771-0", "1558-6"


def kinds_of(encounter: dict) -> list[str]:
    return [FOLLOW_UP_TYPES[c["code"]] for t in encounter.get("type", []) for c in t.get("coding", [])
            if c.get("system") == codes.ENCOUNTER_TYPE and c.get("code") in FOLLOW_UP_TYPES]


def from_fhir(server, encounter: dict | str, kind: str | None = None, *, identity: Identity = SYSTEM,
              conn: Connection | None = None, patients: dict[str, dict] | None = None) -> FollowUpRecord:
    """The record of a stored follow-up Encounter (the resource, or ``"Encounter/<id>"``)."""
    if conn is None:
        with server.db.read() as c:
            return from_fhir(server, encounter, kind, identity=identity, conn=c, patients=patients)
    if isinstance(encounter, str):
        found = search_resources(server, conn, "Encounter", [("_id", encounter.split("/")[-1])], identity, 1)
        if not found:
            raise LookupError(f"{encounter} is not known")
        encounter = found[0]
    kinds = kinds_of(encounter)
    if not kinds:
        raise ValueError(f"Encounter/{encounter['id']} is not a hypertension or diabetes follow-up")
    kind = kind or kinds[0]
    start = (encounter.get("period") or {}).get("start")
    record = FollowUpRecord(kind=kind, visit_date=_day(start), source=f"Encounter/{encounter['id']}")
    patients = patients if patients is not None else {}
    _patient(server, conn, record, encounter, identity, patients)
    _encounter(server, conn, record, encounter, identity)
    enc_ref = f"Encounter/{encounter['id']}"
    for obs in search_resources(server, conn, "Observation", [("encounter", enc_ref)], identity, 200):
        read_observation(record, obs)
    statements = search_resources(server, conn, "MedicationStatement", [("context", enc_ref)], identity, 100)
    _medications(record, statements)
    key = next((i.get("value") for i in encounter.get("identifier", []) if i.get("system") == RECORD_SYSTEM), None)
    if key:
        goal = search_resources(server, conn, "Goal", [("_id", resource_id(f"{key}-goal"))], identity, 1)
        if goal:
            _targets(record, goal[0])
    _referral(server, conn, record, encounter, identity)
    return record


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value[:10]) if value else None


def _patient(server, conn, record: FollowUpRecord, encounter: dict, identity: Identity,
             patients: dict[str, dict]) -> None:
    ref = (encounter.get("subject") or {}).get("reference", "")
    if ref not in patients:
        found = search_resources(server, conn, "Patient", [("_id", ref.split("/")[-1])], identity, 1)
        patients[ref] = found[0] if found else {}
    patient = patients[ref]
    names = patient.get("name") or [{}]
    name = names[0]
    record.name = name.get("text") or (name.get("family", "") + "".join(name.get("given", []))) or None
    for ident in patient.get("identifier", []):
        if ident.get("system") == codes.OID_RESIDENT_ID:
            record.resident_id = ident.get("value")
        elif ident.get("system") == codes.OID_HEALTH_RECORD:
            record.health_record_number = ident.get("value")


def _code(ext: dict) -> str | None:
    return (ext.get("valueCoding") or {}).get("code")


def _encounter(server, conn, record: FollowUpRecord, encounter: dict, identity: Identity) -> None:
    for ext in encounter.get("extension", []):
        url = ext.get("url", "")
        if url == codes.VISIT_MODE_EXTENSION:
            record.visit_mode = _code(ext)
        elif url == codes.VISIT_CLASSIFICATION_EXTENSION:
            record.visit_classification = _code(ext)
        elif url == codes.NEXT_VISIT_EXTENSION:
            record.next_visit_date = _day(ext.get("valueDate"))
        elif url.endswith("/medication-compliance"):
            record.medication_compliance = _code(ext)
        elif url.endswith("/lifestyle"):
            _lifestyle(record, ext.get("extension", []))
    participant = (encounter.get("participant") or [{}])[0].get("individual") or {}
    record.doctor = participant.get("display") or _practitioner_name(server, conn, participant, identity)


def _lifestyle(record: FollowUpRecord, parts: list[dict]) -> None:
    for part in parts:
        url, number, code = part.get("url"), part.get("valueInteger"), _code(part)
        if url == "smoking":
            record.smoking_per_day = number
        elif url == "drinking" and number is not None:
            record.drinking_per_day = _number(number / ML_PER_LIANG)
        elif url == "exerciseSessions":
            record.exercise_times_per_week = number
        elif url == "exerciseMinutes":
            record.exercise_minutes = number
        elif url == "saltIntake":
            record.salt_intake = code
        elif url == "psychologicalAdjustment":
            record.psychological_adjustment = code
        elif url == "adviceCompliance":
            record.compliance_with_advice = code


def _number(value: float) -> float:
    return float(round(value, 2))


def _practitioner_name(server, conn, individual: dict, identity: Identity) -> str | None:
    ref = individual.get("reference") or ""
    if ref.startswith("PractitionerRole/"):
        roles = search_resources(server, conn, "PractitionerRole", [("_id", ref.split("/")[1])], identity, 1)
        ref = ((roles[0].get("practitioner") or {}).get("reference") or "") if roles else ""
    if ref.startswith("Practitioner/"):
        found = search_resources(server, conn, "Practitioner", [("_id", ref.split("/")[1])], identity, 1)
        if found and found[0].get("name"):
            name = found[0]["name"][0]
            return name.get("text") or (name.get("family", "") + "".join(name.get("given", [])))
    return None


def _codings(concept: dict | None) -> list[dict]:
    return (concept or {}).get("coding", [])


def read_observation(record: FollowUpRecord, obs: dict) -> None:
    """Set the fields of ``record`` that one Observation of the visit carries."""
    if obs.get("status") in ("entered-in-error", "cancelled"):
        return
    value = (obs.get("valueQuantity") or {}).get("value")
    for coding in _codings(obs.get("code")):
        system, code = coding.get("system"), coding.get("code")
        if system == codes.LOINC:
            if code == "85354-9":
                for component in obs.get("component", []):
                    number = (component.get("valueQuantity") or {}).get("value")
                    codes_of = {c.get("code") for c in _codings(component.get("code"))}
                    if "8480-6" in codes_of and number is not None:
                        record.sbp = int(number)
                    if "8462-4" in codes_of and number is not None:
                        record.dbp = int(number)
            elif code in _LOINC_FIELDS and value is not None:
                name = _LOINC_FIELDS[code]
                setattr(record, name, int(value) if name == "heart_rate" else float(value))
                if code == "4548-4":
                    effective = _day(obs.get("effectiveDateTime"))
                    record.hba1c_date = effective if effective != record.visit_date else None
            elif code == _GLUCOSE_MMOL and value is not None:
                record.fasting_glucose = float(value)
            elif code == _GLUCOSE_MG and value is not None:
                record.fasting_glucose = round(float(value) / codes.GLUCOSE_MG_PER_DL_PER_MMOL_PER_L, 1)
        elif system == ITEM_SYSTEM:
            _item(record, code, obs)


def _item(record: FollowUpRecord, code: str, obs: dict) -> None:
    concept = obs.get("valueCodeableConcept") or {}
    first = next(iter(_codings(concept)), {}).get("code")
    if code == "symptoms":
        record.symptoms = [c.get("code") for comp in obs.get("component", []) for c in _codings(comp.get("code"))]
        record.symptoms_other = obs.get("valueString")
    elif code == "other-signs":
        record.other_signs = obs.get("valueString")
    elif code == "auxiliary-exams":
        record.auxiliary_exams = obs.get("valueString")
    elif code == "adverse-drug-reaction":
        record.adverse_reactions = first
        record.adverse_reactions_text = concept.get("text")
    elif code == "dorsalis-pedis-pulse":
        record.dorsalis_pedis_pulse = first
        record.dorsalis_pedis_side = next(iter(_codings(obs.get("bodySite"))), {}).get("code")
    elif code == "hypoglycaemia":
        record.hypoglycaemia = first
    elif code == "staple-food":
        value = (obs.get("valueQuantity") or {}).get("value")
        record.staple_food_g_per_day = float(value) if value is not None else None


def _medications(record: FollowUpRecord, statements: list[dict]) -> None:
    def order(statement: dict) -> tuple[int, str]:
        value = next((i.get("value", "") for i in statement.get("identifier", [])
                      if i.get("system") == RECORD_SYSTEM), "")
        tail = value.rsplit("-", 1)[-1]
        return (int(tail) if tail.isdigit() else 10_000, statement.get("id", ""))

    for statement in sorted(statements, key=order):
        if statement.get("status") == "entered-in-error":
            continue
        medication = statement.get("medicationCodeableConcept") or {}
        usage = next((d.get("text") for d in statement.get("dosage", []) if d.get("text")), None)
        if any(c.get("system") == ATC and str(c.get("code", "")).startswith("A10A") for c in _codings(medication)):
            record.insulin_type = medication.get("text")
            record.insulin_usage = usage
            continue
        name = medication.get("text") or next((c.get("display") for c in _codings(medication)), None)
        if name:
            record.medications.append(Medication(name, usage))


def _targets(record: FollowUpRecord, goal: dict) -> None:
    for target in goal.get("target", []):
        quantity = (target.get("detailQuantity") or {}).get("value")
        for coding in _codings(target.get("measure")):
            code = coding.get("code")
            if code == "29463-7":
                record.target_weight_kg = float(quantity)
            elif code == "39156-5":
                record.target_bmi = float(quantity)
            elif code == "smoking":
                record.target_smoking_per_day = int(quantity)
            elif code == "drinking":
                record.target_drinking_per_day = _number(quantity / ML_PER_LIANG)
            elif code == "exercise-sessions":
                record.target_exercise_times_per_week = int(quantity)
            elif code == "exercise-minutes":
                record.target_exercise_minutes = int(quantity)
            elif code == "staple-food":
                record.target_staple_food_g_per_day = float(quantity)
            elif code == "salt-intake":
                record.target_salt_intake = next(iter(_codings(target.get("detailCodeableConcept"))), {}).get("code")


def _referral(server, conn, record: FollowUpRecord, encounter: dict, identity: Identity) -> None:
    """The visit's own referral (not the urgent-referral one this adapter adds by rule)."""
    requests = search_resources(server, conn, "ServiceRequest", [("encounter", f"Encounter/{encounter['id']}")],
                                identity, 20)
    for request in requests:
        if not any((c.get("system"), c.get("code")) == REFERRAL_CATEGORY
                   for cat in request.get("category", []) for c in _codings(cat)):
            continue
        if any(i.get("system") == RECORD_SYSTEM and i.get("value", "").endswith("-urgent-referral")
               for i in request.get("identifier", [])):
            continue
        reason = next(iter(request.get("reasonCode", [])), {})
        record.referral_reason = reason.get("text")
        performer = next(iter(request.get("performer", [])), {})
        record.referral_to = performer.get("display")
        return

