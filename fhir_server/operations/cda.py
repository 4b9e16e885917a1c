"""CDA R2 documents over the API: ``$import-cda`` and ``$cda``.

* ``POST [base]/$import-cda``: the body is one CDA document (``Content-Type`` an XML media
  type: ``application/xml``, ``text/xml``, ``application/hl7-cda+xml``): a hypertension or
  diabetes follow-up (WS/T 483.12 / 483.13) or a referral record (WS/T 483.20). It is written
  in one transaction with the caller's identity (each resource is checked against the
  caller's scopes and organisation, as in a transaction Bundle); re-posting it changes
  nothing. Answers 200 with a Parameters: ``kind``, ``documentId``, ``status`` (created /
  updated / unchanged, or skipped: the visit is already recorded by another system),
  ``resource`` (a reference per resource written or matched) and ``note``. A refused
  document (DOCTYPE / entities, malformed, unknown kind) is 400 with an OperationOutcome; an
  unknown patient or a document the profiles refuse is 422.
* ``GET [base]/Encounter/[id]/$cda``: the follow-up document of a follow-up Encounter;
  ``?kind=hypertension-follow-up|diabetes-follow-up`` chooses the form when one visit served
  both diseases; ``GET [base]/ServiceRequest/[id]/$cda``: the referral record of a
  referral. Answers ``application/xml; charset=utf-8`` (UTF-8, Chinese text as it is).

Scopes: ``$import-cda`` needs create on every type (``system/*.c``) at the route, then each
resource written is checked again; ``$cda`` needs read on the instance's type, and the
patient and organisations it reads are read with the caller's identity.
"""

from __future__ import annotations

from adapters.public_health.cda.document_export import export_follow_up, export_referral
from adapters.public_health.cda.document_import import import_document
from fhir_server.api.http import FhirRequest, FhirResponse
from fhir_server.errors import UnsupportedMediaType
from fhir_server.server import Server

__all__ = ["CDA_MEDIA_TYPE", "encounter_document", "import_cda", "service_request_document"]

CDA_MEDIA_TYPE = "application/xml; charset=utf-8"
_XML_TYPES = ("application/xml", "text/xml", "application/hl7-cda+xml", "application/cda+xml")


def import_cda(server: Server, request: FhirRequest) -> FhirResponse:
    media = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if media and media not in _XML_TYPES:
        raise UnsupportedMediaType(f"$import-cda takes the CDA document itself as the body "
                                   f"({', '.join(_XML_TYPES)}), not {media!r}")
    result = import_document(server, request.raw_body, what="The CDA document", identity=request.identity)
    parameters = [{"name": "kind", "valueCode": result.kind},
                  {"name": "status", "valueCode": result.status}]
    if result.document_id:
        parameters.insert(1, {"name": "documentId", "valueString": result.document_id})
    parameters += [{"name": "resource", "valueReference": {"reference": ref}} for ref in result.resources]
    parameters += [{"name": "note", "valueString": note} for note in result.notes]
    return FhirResponse(200, {"resourceType": "Parameters", "parameter": parameters})


def encounter_document(server: Server, request: FhirRequest) -> FhirResponse:
    encounter_id = request.path_params["id"]
    content = export_follow_up(server, encounter_id, identity=request.identity, expected_kind=request.param("kind"))
    server.audit.read(request.identity, "operation", [("Encounter", encounter_id)],
                      query=f"Encounter/{encounter_id}/$cda")
    return FhirResponse(200, content=content, content_type=CDA_MEDIA_TYPE)


def service_request_document(server: Server, request: FhirRequest) -> FhirResponse:
    request_id = request.path_params["id"]
    content = export_referral(server, request_id, identity=request.identity)
    server.audit.read(request.identity, "operation", [("ServiceRequest", request_id)],
                      query=f"ServiceRequest/{request_id}/$cda")
    return FhirResponse(200, content=content, content_type=CDA_MEDIA_TYPE)
