"""Export of the three documents from what the server holds, as UTF-8 XML bytes.

* ``export_follow_up(server, encounter_id)``: a follow-up Encounter (whatever system wrote
  it) -> ``from_fhir`` -> ``FollowUpRecord`` -> hypertension or diabetes follow-up document;
  the header gets the patient's sex and birth date and the Encounter's serviceProvider;
* ``export_referral(server, request_id)``: a referral ServiceRequest -> referral record.

``export_document(server, kind, resource_id)`` picks by kind (the CLI's ``--kind``).
"""

from __future__ import annotations

from datetime import datetime

from lxml import etree

from adapters.public_health.cda.follow_up_document import (
    DOCUMENT_KINDS,
    RECORD_KINDS,
    FollowUpContext,
    follow_up_to_cda,
)
from adapters.public_health.cda.mapping import identifier_root
from adapters.public_health.cda.parse import CdaDocumentError
from adapters.public_health.cda.referral_document import KIND as REFERRAL, referral_from_fhir, referral_to_cda
from adapters.public_health.cda.store_lookup import organization_code, patient_contact, sex_code_of
from adapters.public_health.from_fhir import from_fhir, kinds_of
from fhir_server.auth.identity import SYSTEM, Identity

__all__ = ["KINDS", "export_document", "export_follow_up", "export_referral", "to_bytes"]

KINDS = (*DOCUMENT_KINDS.values(), REFERRAL)


def to_bytes(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _now() -> str:
    return datetime.now().astimezone().strftime("%Y%m%d%H%M%S%z")


def export_document(server, kind: str, resource_id: str, *, identity: Identity = SYSTEM) -> bytes:
    if kind == REFERRAL:
        return export_referral(server, resource_id, identity=identity)
    if kind in DOCUMENT_KINDS.values():
        return export_follow_up(server, resource_id, identity=identity, expected_kind=kind)
    raise CdaDocumentError(f"unknown document kind {kind!r}; one of {', '.join(KINDS)}")


def export_referral(server, request_id: str, *, identity: Identity = SYSTEM) -> bytes:
    return to_bytes(referral_to_cda(referral_from_fhir(server, request_id, identity=identity),
                                    effective_time=_now()))


def export_follow_up(server, encounter_id: str, *, identity: Identity = SYSTEM,
                     expected_kind: str | None = None) -> bytes:
    encounter = server.resources.read("Encounter", encounter_id, identity=identity)
    kinds = [DOCUMENT_KINDS[k] for k in kinds_of(encounter)]
    if not kinds:
        raise CdaDocumentError(f"Encounter/{encounter_id} is not a hypertension or diabetes follow-up")
    if expected_kind and expected_kind not in kinds:
        raise CdaDocumentError(f"Encounter/{encounter_id} is a {' and '.join(kinds)} visit, not a {expected_kind}")
    if expected_kind is None and len(kinds) > 1:
        raise CdaDocumentError(f"Encounter/{encounter_id} is a follow-up of both diseases: say which document "
                               f"({' or '.join(kinds)})")
    kind = expected_kind or kinds[0]
    record = from_fhir(server, encounter, RECORD_KINDS[kind], identity=identity)
    patient_ref = (encounter.get("subject") or {}).get("reference", "")
    patient = server.resources.read("Patient", patient_ref.split("/", 1)[1], identity=identity)
    provider_ref = (encounter.get("serviceProvider") or {}).get("reference", "")
    provider = (server.resources.read("Organization", provider_ref.split("/", 1)[1], identity=identity)
                if provider_ref.startswith("Organization/") else None)
    identifier = next((i for i in encounter.get("identifier", [])
                       if i.get("value") and identifier_root(i.get("system"))), None)
    context = FollowUpContext(
        document_id=identifier["value"] if identifier else f"Encounter-{encounter_id}",
        document_id_root=identifier_root(identifier["system"]) if identifier else None,
        sex_code=sex_code_of(server, patient.get("gender")),
        birth_date=(patient.get("birthDate") or "").replace("-", "") or None,
        organization_code=organization_code(provider),
        organization_name=(provider or {}).get("name"),
        contact=patient_contact(patient),
    )
    return to_bytes(follow_up_to_cda(record, context, effective_time=_now()))
