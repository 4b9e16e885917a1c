"""What a document names, found in the store: the patient, organisations, the sex code.

A document's patient must already be known to the server (as for a follow-up record of the
CSV import): by resident ID (身份证号), else by health-record number (健康档案编号); the two
must not point at different patients. Organisations are found by institution code
(``urn:oid:2.16.156.10011.1.5``).
"""

from __future__ import annotations

from sqlalchemy import Connection

from adapters.public_health.cda.parse import CdaDocumentError
from adapters.public_health.patient_context import search_resources
from fhir_server.auth.identity import Identity
from fhir_server.demo import codes
from fhir_server.errors import Unprocessable

__all__ = ["SEX_CONCEPT_MAP", "UnknownPatient", "confirm_patient", "find_organization", "find_patient",
           "organization_code", "patient_contact", "patient_identifier", "sex_code_of"]

SEX_CONCEPT_MAP = f"{codes.LOCAL_BASE}/ConceptMap/gb-t-2261-1-sex-to-administrative-gender"
ADMINISTRATIVE_GENDER = "http://hl7.org/fhir/administrative-gender"


class UnknownPatient(Unprocessable):
    """The document is about a patient the server does not know (422)."""


def find_patient(server, conn: Connection, resident_id: str | None, health_record_number: str | None,
                 identity: Identity) -> dict:
    found_by = {}
    for system, value, label in ((codes.OID_RESIDENT_ID, resident_id, "resident ID"),
                                 (codes.OID_HEALTH_RECORD, health_record_number, "health-record number")):
        if not value:
            continue
        matches = search_resources(server, conn, "Patient", [("identifier", f"{system}|{value}")], identity, 2)
        if len(matches) > 1:
            raise CdaDocumentError(f"several patients have the document's {label}")
        if matches:
            found_by[label] = matches[0]
    if not found_by:
        tried = " or ".join(label for label, value in (("resident ID", resident_id),
                                                       ("health-record number", health_record_number)) if value)
        raise UnknownPatient(f"no patient with the document's {tried or 'identifiers'} is known to the server")
    ids = {p["id"] for p in found_by.values()}
    if len(ids) > 1:
        raise CdaDocumentError("the document's resident ID and health-record number belong to different patients")
    return next(iter(found_by.values()))


def confirm_patient(server, header, identity: Identity, what: str) -> dict:
    """The patient a document's header names (``find_patient``), refused (422) when the
    header's birth date or sex contradicts the patient's record: a document for someone else
    with a mistyped identifier must not land on this patient."""
    try:
        with server.db.read() as conn:
            patient = find_patient(server, conn, header.resident_id, header.health_record_number, identity)
    except UnknownPatient as exc:
        raise UnknownPatient(f"{what}: {exc.message}") from None
    birth = (header.birth_date or "")[:8]
    held = (patient.get("birthDate") or "").replace("-", "")[:8]
    if len(birth) == 8 and len(held) == 8 and birth != held:
        raise Unprocessable(f"{what}: the document's birth date (birthTime) is not that of the patient "
                            "the server holds under its resident ID / health-record number")
    gender = _gender_of(server, header.sex_code)
    if gender in ("male", "female") and patient.get("gender") in ("male", "female") and gender != patient["gender"]:
        raise Unprocessable(f"{what}: the document's sex (administrativeGenderCode) is not that of the patient "
                            "the server holds under its resident ID / health-record number")
    return patient


def _gender_of(server, sex_code: str | None) -> str | None:
    if not sex_code:
        return None
    answer = server.terminology.translate(sex_code, "urn:oid:2.16.156.10011.2.3.3.4", url=SEX_CONCEPT_MAP)
    return next((m.code for m in answer.matches if m.code and m.equivalence == "equivalent"), None)


def find_organization(server, conn: Connection, code: str | None, identity: Identity) -> dict | None:
    if not code:
        return None
    matches = search_resources(server, conn, "Organization",
                               [("identifier", f"{codes.OID_INSTITUTION}|{code}")], identity, 2)
    return matches[0] if matches else None


def organization_code(organization: dict | None) -> str | None:
    if not organization:
        return None
    return next((i.get("value") for i in organization.get("identifier", [])
                 if i.get("system") == codes.OID_INSTITUTION), None)


def patient_identifier(patient: dict, system: str) -> str | None:
    return next((i.get("value") for i in patient.get("identifier", []) if i.get("system") == system), None)


def patient_contact(patient: dict) -> dict[str, str]:
    """The header's address and telephone fields (``DocumentHeader`` keywords) of a Patient:
    its home address (else its first), and its first phone number (home or mobile first)."""
    addresses = patient.get("address") or []
    address = next((a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else {})
    phones = [t for t in patient.get("telecom") or [] if t.get("system") == "phone" and t.get("value")]
    phones.sort(key=lambda t: t.get("use") not in ("home", "mobile"))
    contact = {
        "address_state": address.get("state"),
        "address_city": address.get("city"),
        "address_county": address.get("district"),
        "address_line": "".join(address.get("line") or []) or None,
        "telephone": phones[0]["value"] if phones else None,
    }
    return {name: value for name, value in contact.items() if value}


def sex_code_of(server, gender: str | None) -> str | None:
    """GB/T 2261.1 code of a FHIR gender, by the county ConceptMap read backwards (the
    ``equivalent`` match: unknown -> 0, not 9)."""
    if not gender:
        return None
    answer = server.terminology.translate(gender, ADMINISTRATIVE_GENDER, url=SEX_CONCEPT_MAP, reverse=True)
    matches = [m for m in answer.matches if m.code and m.equivalence == "equivalent"]
    return matches[0].code if matches else None
