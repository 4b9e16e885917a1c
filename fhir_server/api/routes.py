"""The route table: every REST path, its handler, and what it means for the CapabilityStatement.

Order matters: literal paths (``_history``, ``_search``, ``$operations``) come before the
``{id}`` paths that would otherwise swallow them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adapters.public_health import follow_up_operations
from fhir_server.api import interactions as i
from fhir_server.api.capability import capability_statement
from fhir_server.api.http import FhirRequest, FhirResponse
from fhir_server.operations import bundle as bundle_op
from fhir_server.operations import cda, everything, lastn, meta, reindex, terminology, validate
from fhir_server.server import Server

Handler = Callable[[Server, FhirRequest], FhirResponse]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    interaction: str | None = None  # CapabilityStatement interaction code
    level: str = "type"  # "system", "type" or "instance"
    operation: str | None = None  # "$name" for operations


def _capabilities(server: Server, request: FhirRequest) -> FhirResponse:
    return FhirResponse(200, capability_statement(server, ROUTES, request.base_url))


ROUTES: tuple[Route, ...] = (
    Route("GET", "/metadata", _capabilities, "capabilities", "system"),
    Route("POST", "/", bundle_op.batch_or_transaction, "transaction", "system"),
    Route("GET", "/_history", i.history_system, "history-system", "system"),
    Route("POST", "/$reindex", reindex.system, None, "system", "$reindex"),
    Route("GET", "/$meta", meta.system, None, "system", "$meta"),
    Route("POST", "/$meta", meta.system, None, "system", "$meta"),
    Route("GET", "/Observation/$lastn", lastn.handle, None, "type", "$lastn"),
    Route("POST", "/Observation/$lastn", lastn.handle, None, "type", "$lastn"),
    Route("GET", "/Patient/{id}/$everything", everything.handle, None, "instance", "$everything"),
    Route("POST", "/Patient/{id}/$everything", everything.handle, None, "instance", "$everything"),
    Route("POST", "/$import-cda", cda.import_cda, None, "system", "$import-cda"),
    Route("GET", "/Encounter/{id}/$cda", cda.encounter_document, None, "instance", "$cda"),
    Route("GET", "/ServiceRequest/{id}/$cda", cda.service_request_document, None, "instance", "$cda"),
    Route("POST", "/$import-followups", follow_up_operations.import_followups, None, "system", "$import-followups"),
    Route("GET", "/$export-followups", follow_up_operations.export_followups, None, "system", "$export-followups"),
    Route("POST", "/$export-followups", follow_up_operations.export_followups, None, "system", "$export-followups"),
    Route("GET", "/CodeSystem/$lookup", terminology.lookup, None, "type", "$lookup"),
    Route("POST", "/CodeSystem/$lookup", terminology.lookup, None, "type", "$lookup"),
    Route("GET", "/ValueSet/$validate-code", terminology.validate_code, None, "type", "$validate-code"),
    Route("POST", "/ValueSet/$validate-code", terminology.validate_code, None, "type", "$validate-code"),
    Route("GET", "/ValueSet/$expand", terminology.expand, None, "type", "$expand"),
    Route("POST", "/ValueSet/$expand", terminology.expand, None, "type", "$expand"),
    Route("GET", "/ValueSet/{id}/$validate-code", terminology.validate_code, None, "instance", "$validate-code"),
    Route("POST", "/ValueSet/{id}/$validate-code", terminology.validate_code, None, "instance", "$validate-code"),
    Route("GET", "/ValueSet/{id}/$expand", terminology.expand, None, "instance", "$expand"),
    Route("POST", "/ValueSet/{id}/$expand", terminology.expand, None, "instance", "$expand"),
    Route("GET", "/ConceptMap/$translate", terminology.translate, None, "type", "$translate"),
    Route("POST", "/ConceptMap/$translate", terminology.translate, None, "type", "$translate"),
    Route("GET", "/ConceptMap/{id}/$translate", terminology.translate, None, "instance", "$translate"),
    Route("POST", "/ConceptMap/{id}/$translate", terminology.translate, None, "instance", "$translate"),
    Route("POST", "/{type}/$validate", validate.type_level, None, "type", "$validate"),
    Route("GET", "/{type}/_history", i.history_type, "history-type"),
    Route("POST", "/{type}/_search", i.search, "search-type"),
    Route("POST", "/{type}/$reindex", reindex.type_level, None, "type", "$reindex"),
    Route("GET", "/{type}/$meta", meta.type_level, None, "type", "$meta"),
    Route("POST", "/{type}/$meta", meta.type_level, None, "type", "$meta"),
    Route("GET", "/{type}", i.search, "search-type"),
    Route("POST", "/{type}", i.create, "create"),
    Route("PUT", "/{type}", i.conditional_update, "update"),
    Route("DELETE", "/{type}", i.conditional_delete, "delete"),
    Route("GET", "/{type}/{id}/_history/{vid}", i.vread, "vread", "instance"),
    Route("GET", "/{type}/{id}/_history", i.history_instance, "history-instance", "instance"),
    Route("POST", "/{type}/{id}/$reindex", reindex.instance, None, "instance", "$reindex"),
    Route("GET", "/{type}/{id}/$validate", validate.instance, None, "instance", "$validate"),
    Route("POST", "/{type}/{id}/$validate", validate.instance, None, "instance", "$validate"),
    Route("GET", "/{type}/{id}/$meta", meta.instance, None, "instance", "$meta"),
    Route("POST", "/{type}/{id}/$meta", meta.instance, None, "instance", "$meta"),
    Route("POST", "/{type}/{id}/$meta-add", meta.add, None, "instance", "$meta-add"),
    Route("POST", "/{type}/{id}/$meta-delete", meta.delete, None, "instance", "$meta-delete"),
    Route("GET", "/{type}/{id}", i.read, "read", "instance"),
    Route("PUT", "/{type}/{id}", i.update, "update", "instance"),
    Route("PATCH", "/{type}/{id}", i.patch, "patch", "instance"),
    Route("DELETE", "/{type}/{id}", i.delete, "delete", "instance"),
)
