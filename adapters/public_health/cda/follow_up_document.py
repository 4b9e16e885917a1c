"""The follow-up documents (WS/T 483.12 hypertension, 483.13 type 2 diabetes) <-> FollowUpRecord.

The document is one filled-in national form, so it maps onto the same ``FollowUpRecord`` the
CSV / Excel / JSON import reads (``adapters.public_health.follow_up_record``); the record then
becomes FHIR by the one mapping that import uses (``follow_up_import.import_record``), and
comes back from FHIR by ``from_fhir``. There is no second CDA-to-FHIR mapping to drift.

Header (``mappings/cda/header.csv``): 姓名, 身份证号, 健康档案编号, 现住址 and 电话 (recordTarget;
the address and telephone are written from the Patient, not stored on import), 随访医生
(author/assignedPerson/name), the visit date (author/time), the organisation that did the
follow-up (author/representedOrganization and custodian). Body: every other form field, one
row per field in ``mappings/cda/sections/{hypertension,diabetes}-follow-up.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from lxml import etree

from adapters.public_health.cda.body import read_body, write_body
from adapters.public_health.cda.header import DocumentHeader, new_document, read_header
from adapters.public_health.cda.mapping import document_kinds, entry_maps
from adapters.public_health.cda.parse import CdaDocumentError, cda_date, format_cda_date
from adapters.public_health.follow_up_record import FollowUpRecord, Medication, RecordError

__all__ = ["DOCUMENT_KINDS", "FollowUpContext", "cda_to_follow_up", "follow_up_to_cda"]

# record kind <-> document kind
DOCUMENT_KINDS = {"hypertension": "hypertension-follow-up", "diabetes": "diabetes-follow-up"}
RECORD_KINDS = {v: k for k, v in DOCUMENT_KINDS.items()}


@dataclass
class FollowUpContext:
    """What the header carries beyond the form: the document id, the patient's sex, birth
    date, address and telephone, the organisation that did the follow-up (filled by the export
    from FHIR)."""

    document_id: str | None = None
    document_id_root: str | None = None
    sex_code: str | None = None
    birth_date: str | None = None  # yyyyMMdd
    organization_code: str | None = None
    organization_name: str | None = None
    contact: dict[str, str] = field(default_factory=dict)  # DocumentHeader address / telephone fields


def follow_up_to_cda(record: FollowUpRecord, context: FollowUpContext | None = None, *,
                     effective_time: str | None = None) -> etree._Element:
    context = context or FollowUpContext()
    kind = DOCUMENT_KINDS[record.kind]
    header = DocumentHeader(
        document_id_root=context.document_id_root, document_id=context.document_id,
        effective_time=effective_time, health_record_number=record.health_record_number,
        resident_id=record.resident_id, name=record.name, sex_code=context.sex_code,
        birth_date=context.birth_date, author_time=format_cda_date(record.visit_date), author_name=record.doctor,
        author_org_code=context.organization_code, author_org_name=context.organization_name,
        custodian_org_code=context.organization_code, custodian_org_name=context.organization_name,
        **context.contact,
    )
    root = new_document(document_kinds()[kind], header)
    values = {f.name: getattr(record, f.name) for f in fields(FollowUpRecord)}
    values["medications"] = [(m.name, m.usage) for m in record.medications]
    write_body(root, entry_maps(kind), values)
    return root


def cda_to_follow_up(root: etree._Element, kind: str, what: str = "CDA document") -> FollowUpRecord:
    """The record of a follow-up document of ``kind`` (a document kind of ``DOCUMENT_KINDS``)."""
    header = read_header(root)
    body = read_body(root, entry_maps(kind))
    medications = [Medication(name, usage) for name, usage in body.pop("medications", [])]
    try:
        record = FollowUpRecord(
            kind=RECORD_KINDS[kind], name=header.name, resident_id=header.resident_id,
            health_record_number=header.health_record_number, doctor=header.author_name,
            medications=medications, source=what, **body,
        )
    except RecordError as exc:
        raise CdaDocumentError(f"{what}: {exc}") from None
    if record.visit_date is None:
        record.visit_date = cda_date(header.author_time, f"{what}: author time")
    if record.visit_date is None:
        raise CdaDocumentError(f"{what}: no visit date (随访日期: the effectiveTime of the 随访方式 entry, "
                               "else author/time)")
    if not (record.resident_id or record.health_record_number):
        raise CdaDocumentError(f"{what}: no resident ID or health-record number in recordTarget")
    return record
