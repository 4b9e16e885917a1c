"""Import of one CDA document: parse (hardened), tell its kind, write it in one transaction.

* a follow-up document becomes a ``FollowUpRecord`` and goes in through
  ``follow_up_import.import_record``: the very resources a CSV row of the same visit gives,
  in one transaction, idempotently (re-importing changes nothing);
* a referral record becomes a ``ReferralRecord`` and goes in through ``run_transaction``
  (``referral_document.referral_bundle``: ServiceRequest + Task), idempotently too.

``import_document`` returns a ``DocumentResult`` (kind, document id, status ``created`` /
``updated`` / ``unchanged``, or ``skipped`` when another system already recorded that visit
(as the CSV import reports it), the resources written); a document that cannot be used raises a
``FhirError`` (``CdaDocumentError`` 400 for an unreadable or refused document, 422 when its
patient is unknown, its header's birth date or sex contradicts the patient's record, or the
store refuses it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.public_health.cda.follow_up_document import RECORD_KINDS, cda_to_follow_up
from adapters.public_health.cda.header import document_kind, read_header
from adapters.public_health.cda.parse import parse_document
from adapters.public_health.cda.referral_document import KIND as REFERRAL, cda_to_referral, referral_bundle
from adapters.public_health.cda.store_lookup import confirm_patient
from adapters.public_health.follow_up_import import import_record
from fhir_server.auth.identity import SYSTEM, Identity
from fhir_server.errors import Unprocessable
from fhir_server.operations.bundle import run_transaction

__all__ = ["DocumentResult", "import_document"]


@dataclass
class DocumentResult:
    kind: str  # hypertension-follow-up | diabetes-follow-up | referral
    document_id: str | None
    status: str  # created | updated | unchanged | skipped
    resources: list[str] = field(default_factory=list)  # Type/id of what the document maps to
    notes: list[str] = field(default_factory=list)


def import_document(server, data: bytes | str, *, what: str = "CDA document",
                    identity: Identity = SYSTEM) -> DocumentResult:
    root = parse_document(data, what)
    kind = document_kind(root, what)
    confirm_patient(server, read_header(root), identity, what)
    if kind.kind in RECORD_KINDS:
        record = cda_to_follow_up(root, kind.kind, what)
        result = import_record(server, record, identity)
        if result.status == "error":
            raise Unprocessable(f"{what}: {result.reason}")
        if result.status == "skipped":  # the visit is recorded already, by another system
            return DocumentResult(kind.kind, read_header(root).document_id, "skipped", [], [result.reason or ""])
        return DocumentResult(kind.kind, read_header(root).document_id, result.status,
                              [r for r in (result.encounter, result.urgent_task) if r], list(result.notes))
    if kind.kind == REFERRAL:
        record = cda_to_referral(root, what)
        built = referral_bundle(server, record, identity=identity)
        responses = run_transaction(server, built.bundle, identity=identity)
        return DocumentResult(kind.kind, record.document_id, _status(responses, built.request_version),
                              [_type_id(r) for r in responses if r.get("resource")])
    raise Unprocessable(f"{what}: documents of kind {kind.kind} are not imported")  # pragma: no cover


def _status(responses: list[dict], version_before: str | None) -> str:
    """created: the ServiceRequest is new; updated: it has a new version, or something else
    was created (its Task, an organisation); unchanged: nothing was written."""
    request = next(r for r in responses if (r.get("resource") or {}).get("resourceType") == "ServiceRequest")
    if request["response"]["status"].startswith("201"):
        return "created"
    if any(r["response"]["status"].startswith("201") for r in responses):
        return "updated"
    # a conditional update that changes nothing makes no new version
    return "unchanged" if request["resource"]["meta"]["versionId"] == version_before else "updated"


def _type_id(response: dict) -> str:
    resource = response["resource"]
    return f"{resource['resourceType']}/{resource['id']}"
