"""The referral record document (转诊（院）记录, WS/T 483.20 layout) <-> ServiceRequest + Task.

A ``ReferralRecord`` holds what the document says; the CDA side is table-driven
(``mappings/cda/header.csv`` and ``mappings/cda/sections/referral.csv``), the FHIR side is
this mapping (the county profiles county-referral-request and county-referral-task):

================================  ===========================================================
document                          FHIR
================================  ===========================================================
ClinicalDocument/id               ServiceRequest.identifier and Task.identifier: system
                                  ``urn:oid:<id/@root>`` (or the URL ``code-systems.csv``
                                  gives that root), value ``id/@extension``
recordTarget (resident ID, else   ServiceRequest.subject, Task.for: the patient the server
health-record number)             already knows (a document for an unknown patient is refused)
author/time                       ServiceRequest.authoredOn, Task.authoredOn
author/assignedPerson/name        ServiceRequest.note "转诊医生：<name>" (unless the requester is
                                  the doctor's PractitionerRole, which names the doctor)
author/.../representedOrganization  ServiceRequest.requester, Task.requester (Organization by
                                  institution code; created, name only, if unknown)
informationRecipient/.../         ServiceRequest.performer, Task.owner (as above; a receiver
receivedOrganization              with a name and no code is a Reference with a display)
转诊方向 (direction)              extension referral-direction on both
转诊原因分类 / 转诊原因           ServiceRequest.reasonCode.coding / .text
转入科室及服务                    ServiceRequest.code.text
初步印象, 主要病史, 治疗经过,     ServiceRequest.note, one Annotation each, text starting with
主要检查结果, 康复建议            its label (``NOTE_LABELS``)
================================  ===========================================================

Writing (``referral_bundle``) is idempotent: the ServiceRequest is a conditional update on its
identifier that keeps what the document does not map (status, encounter, reasonReference,
other notes and extensions) and keeps a stored requester or performer that already says the
same (the same organisation with its display, a PractitionerRole of that organisation, the
same name), so re-importing a document changes nothing; a Task is created (``requested``)
only when the referral has none: its status belongs to the receiving side. Export
(``referral_from_fhir``) reads any referral (category SNOMED 3457005), also those the
follow-up import writes (requester = the doctor's PractitionerRole, performer = the form's
转诊机构及科别 text).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import date

from lxml import etree

from adapters.public_health.cda.body import read_body, write_body
from adapters.public_health.cda.header import DocumentHeader, contact_of, new_document, read_header
from adapters.public_health.cda.mapping import (
    code_system_oid,
    document_kinds,
    entry_maps,
    identifier_root,
    identifier_system,
)
from adapters.public_health.cda.parse import (
    CdaDocumentError,
    cda_date,
    cda_datetime,
    format_cda_date,
    format_cda_datetime,
)
from adapters.public_health.cda.store_lookup import (
    find_organization,
    find_patient,
    organization_code,
    patient_contact,
    patient_identifier,
    sex_code_of,
)
from adapters.public_health.patient_context import search_resources
from fhir_server.auth.identity import SYSTEM, Identity
from fhir_server.demo import codes
from fhir_server.demo.codes import LOCAL_BASE

__all__ = ["KIND", "NOTE_LABELS", "ReferralBundle", "ReferralRecord", "cda_to_referral", "referral_bundle",
           "referral_from_fhir", "referral_to_cda"]

KIND = "referral"
DIRECTION_EXTENSION = f"{LOCAL_BASE}/StructureDefinition/referral-direction"
DIRECTION_SYSTEM = f"{LOCAL_BASE}/CodeSystem/referral-direction"
REASON_SYSTEM = f"{LOCAL_BASE}/CodeSystem/referral-reason"
REFERRAL_CATEGORY = {"coding": [{"system": "http://snomed.info/sct", "code": "3457005",
                                 "display": "Patient referral"}], "text": "转诊"}
TASK_CODE = {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]}
DIRECTION_DISPLAY = {"upward": "上转", "downward": "下转"}
# record field -> the label its ServiceRequest.note starts with
NOTE_LABELS = {
    "doctor": "转诊医生：",
    "initial_impression": "初步印象：",
    "main_history": "主要病史：",
    "treatment_so_far": "治疗经过：",
    "recent_results": "主要检查结果：",
    "rehabilitation_advice": "康复建议：",
}


@dataclass
class ReferralRecord:
    document_id: str | None = None
    document_id_root: str | None = None
    resident_id: str | None = None
    health_record_number: str | None = None
    name: str | None = None
    sex_code: str | None = None
    birth_date: date | None = None
    authored: str | None = None  # FHIR dateTime
    doctor: str | None = None
    from_org_code: str | None = None
    from_org_name: str | None = None
    to_org_code: str | None = None
    to_org_name: str | None = None
    direction: str | None = None  # upward | downward
    reason_code: str | None = None
    reason_text: str | None = None
    requested_service: str | None = None
    initial_impression: str | None = None
    main_history: str | None = None
    treatment_so_far: str | None = None
    recent_results: str | None = None
    rehabilitation_advice: str | None = None
    contact: dict[str, str] = field(default_factory=dict)  # DocumentHeader address / telephone fields

    def __repr__(self) -> str:  # no personal data in logs
        return f"ReferralRecord(document_id={self.document_id!r}, direction={self.direction!r})"


# --------------------------------------------------------------------------------------------
# record <-> CDA
# --------------------------------------------------------------------------------------------


def referral_to_cda(record: ReferralRecord, *, effective_time: str | None = None) -> etree._Element:
    header = DocumentHeader(
        document_id_root=record.document_id_root, document_id=record.document_id,
        effective_time=effective_time, health_record_number=record.health_record_number,
        resident_id=record.resident_id, name=record.name, sex_code=record.sex_code,
        birth_date=format_cda_date(record.birth_date), author_time=format_cda_datetime(record.authored),
        author_name=record.doctor, author_org_code=record.from_org_code, author_org_name=record.from_org_name,
        custodian_org_code=record.from_org_code, custodian_org_name=record.from_org_name,
        recipient_org_code=record.to_org_code, recipient_org_name=record.to_org_name,
        **record.contact,
    )
    root = new_document(document_kinds()[KIND], header)
    values = {f.name: getattr(record, f.name) for f in fields(ReferralRecord)}
    write_body(root, entry_maps(KIND), values)
    return root


def cda_to_referral(root: etree._Element, what: str = "CDA document") -> ReferralRecord:
    header = read_header(root)
    body = read_body(root, entry_maps(KIND))
    record = ReferralRecord(
        document_id=header.document_id, document_id_root=header.document_id_root,
        resident_id=header.resident_id, health_record_number=header.health_record_number,
        name=header.name, sex_code=header.sex_code,
        birth_date=cda_date(header.birth_date, f"{what}: patient birthTime"),
        authored=cda_datetime(header.author_time, f"{what}: author time"), doctor=header.author_name,
        from_org_code=header.author_org_code, from_org_name=header.author_org_name,
        to_org_code=header.recipient_org_code, to_org_name=header.recipient_org_name,
        contact=contact_of(header), **body,
    )
    missing = [label for label, value in (
        ("document id (ClinicalDocument/id/@extension)", record.document_id),
        ("patient resident ID or health-record number", record.resident_id or record.health_record_number),
        ("author time (the referral date)", record.authored),
        ("referring organisation (author/assignedAuthor/representedOrganization/id)", record.from_org_code),
        ("receiving organisation (informationRecipient/intendedRecipient/receivedOrganization id or name)",
         record.to_org_code or record.to_org_name),
        ("direction (转诊方向)", record.direction),
        ("reason (转诊原因)", record.reason_code or record.reason_text),
    ) if not value]
    if missing:
        raise CdaDocumentError(f"{what}: the referral record lacks: {'; '.join(missing)}")
    return record


# --------------------------------------------------------------------------------------------
# record -> FHIR transaction
# --------------------------------------------------------------------------------------------


@dataclass
class ReferralBundle:
    bundle: dict  # the transaction
    request_version: str | None  # the stored ServiceRequest's version before it (None: new)


def referral_bundle(server, record: ReferralRecord, *, identity: Identity = SYSTEM) -> ReferralBundle:
    """The transaction writing the referral of ``record`` (see the module docstring)."""
    entries: list[dict] = []
    identifier = _identifier(record)
    criteria = f"identifier={identifier['system']}|{identifier['value']}"
    with server.db.read() as conn:
        patient = find_patient(server, conn, record.resident_id, record.health_record_number, identity)
        orgs: dict[str, str | None] = {}
        for role, code, name in (("from", record.from_org_code, record.from_org_name),
                                 ("to", record.to_org_code, record.to_org_name)):
            found = find_organization(server, conn, code, identity)
            if found is not None:
                orgs[role] = f"Organization/{found['id']}"
            elif not code:
                orgs[role] = None  # named only: a Reference with a display
            elif role == "to" and code == record.from_org_code and orgs.get("from"):
                orgs[role] = orgs["from"]
            else:
                orgs[role] = f"urn:uuid:{uuid.uuid4()}"
                entries.append(_organization_entry(orgs[role], code, name))
        found = search_resources(server, conn, "ServiceRequest", [("identifier", criteria.split("=", 1)[1])],
                                 identity, 2)
        existing = found[0] if found else None
        role_orgs = _role_organizations(server, conn, existing, identity)
        tasks = search_resources(server, conn, "Task", [("focus", f"ServiceRequest/{existing['id']}")],
                                 identity, 1) if existing else []
    request_url = f"urn:uuid:{uuid.uuid4()}"
    patient_ref = f"Patient/{patient['id']}"
    request = _service_request(record, existing, identifier, patient_ref, orgs, role_orgs)
    entries.append({"fullUrl": request_url, "resource": request,
                    "request": {"method": "PUT", "url": f"ServiceRequest?{criteria}"}})
    if not tasks:  # the referral's Task belongs to the receiving side once it exists
        entries.append({
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": _task(record, identifier, request_url, patient_ref, request),
            "request": {"method": "POST", "url": "Task", "ifNoneExist": criteria},
        })
    return ReferralBundle({"resourceType": "Bundle", "type": "transaction", "entry": entries},
                          (existing or {}).get("meta", {}).get("versionId"))


def _identifier(record: ReferralRecord) -> dict:
    root = record.document_id_root or code_system_oid("document-id")
    return {"system": identifier_system(root), "value": record.document_id}


def _role_organizations(server, conn, request: dict | None, identity: Identity) -> dict[str, str]:
    """PractitionerRole reference -> its organisation's reference, for the roles ``request``
    names (a referral written by the follow-up import is requested by the doctor's role)."""
    refs = [(request or {}).get("requester") or {}, *((request or {}).get("performer") or [])]
    out = {}
    for ref in refs:
        target = ref.get("reference") or ""
        if target.startswith("PractitionerRole/"):
            found = search_resources(server, conn, "PractitionerRole", [("_id", target.split("/", 1)[1])], identity, 1)
            organization = ((found[0] if found else {}).get("organization") or {}).get("reference")
            if organization:
                out[target] = organization
    return out


def _party(existing: dict | None, org_ref: str | None, name: str | None, role_orgs: dict[str, str]) -> dict:
    """The Reference to the organisation ``org_ref`` (or, with no code, to ``name``), keeping
    the stored one when it already says the same or more: the same organisation (with its
    display), a PractitionerRole of that organisation, or the same name."""
    if existing:
        target = existing.get("reference")
        if org_ref and (target == org_ref or role_orgs.get(target or "") == org_ref):
            return existing
        if not org_ref and not target and existing.get("display") == name:
            return existing
    return {"reference": org_ref} if org_ref else {"display": name}


def _organization_entry(full_url: str, code: str, name: str | None) -> dict:
    organization = {"resourceType": "Organization", "active": True,
                    "identifier": [{"use": "official", "system": codes.OID_INSTITUTION, "value": code}]}
    if name:
        organization["name"] = name
    return {"fullUrl": full_url, "resource": organization,
            "request": {"method": "POST", "url": "Organization",
                        "ifNoneExist": f"identifier={codes.OID_INSTITUTION}|{code}"}}


def _direction_extension(direction: str) -> dict:
    return {"url": DIRECTION_EXTENSION, "valueCoding": {
        "system": DIRECTION_SYSTEM, "code": direction, "display": DIRECTION_DISPLAY.get(direction, direction)}}


def _service_request(record: ReferralRecord, existing: dict | None, identifier: dict, patient_ref: str,
                     orgs: dict[str, str | None], role_orgs: dict[str, str]) -> dict:
    base = {k: v for k, v in (existing or {}).items() if k not in ("id", "meta")}
    resource = {**base, "resourceType": "ServiceRequest", "meta": codes.profile("county-referral-request")}
    others = [i for i in base.get("identifier", []) if i.get("system") != identifier["system"]]
    resource["identifier"] = [identifier, *others]
    extensions = [e for e in base.get("extension", []) if e.get("url") != DIRECTION_EXTENSION]
    resource["extension"] = [_direction_extension(record.direction), *extensions]
    resource["status"] = base.get("status", "active")
    resource["intent"] = "order"
    if not any(c.get("code") == "3457005" for cat in base.get("category", []) for c in cat.get("coding", [])):
        resource["category"] = [REFERRAL_CATEGORY, *base.get("category", [])]
    if record.requested_service:
        resource["code"] = {"text": record.requested_service}
    else:
        resource.pop("code", None)
    resource["subject"] = {"reference": patient_ref}
    resource["authoredOn"] = record.authored
    resource["requester"] = _party(base.get("requester"), orgs["from"], record.from_org_name, role_orgs)
    resource["performer"] = [_party((base.get("performer") or [None])[0], orgs["to"], record.to_org_name, role_orgs)]
    # the doctor is named by a note unless the requester is the doctor's own role
    by_role = (resource["requester"].get("reference") or "").startswith("PractitionerRole/")
    reason: dict = {}
    if record.reason_code:
        reason["coding"] = [{"system": REASON_SYSTEM, "code": record.reason_code}]
    if record.reason_text:
        reason["text"] = record.reason_text
    resource["reasonCode"] = [reason]
    notes = [n for n in base.get("note", [])
             if not any((n.get("text") or "").startswith(label) for label in NOTE_LABELS.values())]
    notes += [{"text": label + getattr(record, name)} for name, label in NOTE_LABELS.items()
              if getattr(record, name) and not (name == "doctor" and by_role)]
    if notes:
        resource["note"] = notes
    else:
        resource.pop("note", None)
    return resource


def _task(record: ReferralRecord, identifier: dict, request_url: str, patient_ref: str, request: dict) -> dict:
    requester = request["requester"]
    if (requester.get("reference") or "").startswith("PractitionerRole/"):
        requester = {k: v for k, v in requester.items() if k in ("reference", "display")}
    return {
        "resourceType": "Task",
        "meta": codes.profile("county-referral-task"),
        "identifier": [identifier],
        "extension": [_direction_extension(record.direction)],
        "basedOn": [{"reference": request_url}],
        "status": "requested",
        "intent": "order",
        "code": TASK_CODE,
        "focus": {"reference": request_url},
        "for": {"reference": patient_ref},
        "authoredOn": record.authored,
        "requester": requester,
        "owner": request["performer"][0],
    }


# --------------------------------------------------------------------------------------------
# FHIR -> record
# --------------------------------------------------------------------------------------------


def referral_from_fhir(server, request_id: str, *, identity: Identity = SYSTEM) -> ReferralRecord:
    """The referral record of the stored ServiceRequest ``request_id`` (and its patient and
    organisations), whatever wrote it. ``NotFound`` when it is unknown or outside the caller's
    scope. A requester that is a PractitionerRole gives its organisation and the doctor's
    name; a performer named only by a display gives the receiving organisation's name."""
    request = server.resources.read("ServiceRequest", request_id, identity=identity)
    if not any(c.get("code") == "3457005" for cat in request.get("category", []) for c in cat.get("coding", [])):
        raise CdaDocumentError(f"ServiceRequest/{request_id} is not a referral (category 3457005)")
    patient_ref = (request.get("subject") or {}).get("reference", "")
    if not patient_ref.startswith("Patient/"):
        raise CdaDocumentError(f"ServiceRequest/{request_id} has no patient subject")
    patient = server.resources.read("Patient", patient_ref.split("/", 1)[1], identity=identity)
    requester, doctor = _party_of(server, request.get("requester"), identity)
    performer, _ = _party_of(server, (request.get("performer") or [None])[0], identity)
    identifier = next((i for i in request.get("identifier", [])
                       if i.get("value") and identifier_root(i.get("system"))), None)
    reason = (request.get("reasonCode") or [{}])[0]
    direction = next((e.get("valueCoding", {}).get("code") for e in request.get("extension", [])
                      if e.get("url") == DIRECTION_EXTENSION), None)
    record = ReferralRecord(
        document_id=identifier["value"] if identifier else f"ServiceRequest-{request_id}",
        document_id_root=identifier_root(identifier["system"]) if identifier else None,
        resident_id=patient_identifier(patient, codes.OID_RESIDENT_ID),
        health_record_number=patient_identifier(patient, codes.OID_HEALTH_RECORD),
        name=_patient_name(patient),
        sex_code=sex_code_of(server, patient.get("gender")),
        birth_date=date.fromisoformat(patient["birthDate"][:10]) if len(patient.get("birthDate", "")) >= 10 else None,
        authored=request.get("authoredOn"), doctor=doctor,
        from_org_code=organization_code(requester.get("organization")),
        from_org_name=requester.get("name"),
        to_org_code=organization_code(performer.get("organization")), to_org_name=performer.get("name"),
        direction=direction,
        reason_code=next((c.get("code") for c in reason.get("coding", []) if c.get("system") == REASON_SYSTEM), None),
        reason_text=reason.get("text"),
        requested_service=(request.get("code") or {}).get("text"),
        contact=patient_contact(patient),
    )
    for note in request.get("note", []):
        text = note.get("text") or ""
        for name, label in NOTE_LABELS.items():
            if text.startswith(label):
                setattr(record, name, text[len(label):])
    return record


def _party_of(server, reference: dict | None, identity: Identity) -> tuple[dict, str | None]:
    """({"organization": Organization or None, "name": its name or the display}, doctor name)
    of a requester or performer Reference."""
    reference = reference or {}
    target = reference.get("reference") or ""
    doctor = None
    if target.startswith("PractitionerRole/"):
        role = server.resources.read("PractitionerRole", target.split("/", 1)[1], identity=identity)
        target = (role.get("organization") or {}).get("reference") or ""
        practitioner = (role.get("practitioner") or {}).get("reference") or ""
        if practitioner.startswith("Practitioner/"):
            person = server.resources.read("Practitioner", practitioner.split("/", 1)[1], identity=identity)
            doctor = _patient_name(person)
    organization = (server.resources.read("Organization", target.split("/", 1)[1], identity=identity)
                    if target.startswith("Organization/") else None)
    name = (organization or {}).get("name") or reference.get("display")
    return {"organization": organization, "name": name}, doctor


def _patient_name(person: dict) -> str | None:
    for name in person.get("name", []):
        if name.get("text"):
            return name["text"]
        if name.get("family"):
            return name["family"] + "".join(name.get("given", []))
    return None
