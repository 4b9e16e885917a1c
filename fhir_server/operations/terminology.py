"""The terminology operations over HTTP, as FHIR R4 defines them (Parameters in and out).

- ``CodeSystem/$lookup``: ``system`` + ``code`` (or ``coding``), ``version``,
  ``displayLanguage`` -> ``name``, ``version``, ``display``, ``designation`` (parts
  ``language``, ``use``, ``value``) and the ``definition`` as a ``property``.
- ``ValueSet/$validate-code`` (type level with ``url``, or ``ValueSet/{id}``): ``code`` +
  ``system`` (+ ``display``), or ``coding``, or ``codeableConcept`` -> ``result``,
  ``message``, ``display``; when the code could not be checked because the server holds only
  part of its code system, also ``x-caused-by-unknown-system`` (as terminology servers report it).
- ``ValueSet/$expand`` (``url``, or ``ValueSet/{id}``): ``filter``, ``offset``, ``count``,
  ``displayLanguage``, ``includeDesignations`` -> the ValueSet with its ``expansion``.
- ``ConceptMap/$translate`` (``url``, or ``ConceptMap/{id}``, or ``source``/``target``):
  ``code`` + ``system`` (or ``coding``), ``targetsystem``, ``reverse`` -> ``result``,
  ``message``, ``match`` (parts ``equivalence``, ``concept``, ``source``).

Instance-level requests read the stored resource; a shipped one is answered from the
terminology service, any other (a client's own ValueSet or ConceptMap) is evaluated as stored.
An unknown value set or concept map is 404, a missing parameter 400.
"""

from __future__ import annotations

from fhir_server.api.http import FhirRequest, FhirResponse
from fhir_server.errors import InvalidRequest
from fhir_server.operations.parameters import OperationParameters, operation_parameters, parameters_resource
from fhir_server.server import Server
from fhir_server.terminology.code_systems import Designation
from fhir_server.terminology.service import Translation, translate_with, validate_codings
from fhir_server.terminology.value_sets import CodeValidation, Expansion


def lookup(server: Server, request: FhirRequest) -> FhirResponse:
    params = operation_parameters(request)
    system, code = _system_and_code(params)
    found = server.terminology.lookup(system, code, params.text("version"), params.text("displayLanguage"))
    out = [{"name": "name", "valueString": found.name or found.system}]
    if found.version:
        out.append({"name": "version", "valueString": found.version})
    if found.display:
        out.append({"name": "display", "valueString": found.display})
    out += [_designation(d) for d in found.designations]
    if found.definition:
        out.append({"name": "property", "part": [{"name": "code", "valueCode": "definition"},
                                                 {"name": "value", "valueString": found.definition}]})
    return FhirResponse(200, parameters_resource(*out))


def validate_code(server: Server, request: FhirRequest) -> FhirResponse:
    params = operation_parameters(request)
    expansion = _value_set(server, request, params)
    concept = params.get("codeableConcept")
    if concept is not None:
        if not isinstance(concept, dict):
            raise InvalidRequest("Parameter 'codeableConcept' must be a CodeableConcept")
        answer = validate_codings(expansion, concept.get("coding") or [])
    else:
        system, code = _system_and_code(params, system_required=False)
        coding = params.get("coding")
        display = coding.get("display") if isinstance(coding, dict) else params.text("display")
        answer = expansion.validate(system, code, display)
    return FhirResponse(200, _validation(answer))


def expand(server: Server, request: FhirRequest) -> FhirResponse:
    params = operation_parameters(request)
    expansion = _value_set(server, request, params)
    page = expansion.page(
        text_filter=params.text("filter"), offset=params.integer("offset", 0),
        count=params.integer("count", 0) if params.text("count") is not None else None,  # absent: all
        display_language=params.text("displayLanguage"),
        include_designations=params.text("includeDesignations") == "true",
    )
    return FhirResponse(200, page)


def translate(server: Server, request: FhirRequest) -> FhirResponse:
    params = operation_parameters(request)
    system, code = _system_and_code(params)
    reverse = params.text("reverse") == "true"
    if "id" in request.path_params:
        stored = server.resources.read("ConceptMap", request.path_params["id"], identity=request.identity)
        result = translate_with([stored], system, code, params.text("targetsystem"), reverse)
    else:
        result = server.terminology.translate(
            code, system, url=params.text("url") or params.text("conceptMap"), source=params.text("source"),
            target=params.text("target"), target_system=params.text("targetsystem"), reverse=reverse)
    return FhirResponse(200, _translation(result))


# ---- inputs ---------------------------------------------------------------------------------
def _system_and_code(params: OperationParameters, *, system_required: bool = True) -> tuple[str | None, str]:
    coding = params.get("coding")
    if coding is not None:
        if not isinstance(coding, dict) or not coding.get("code"):
            raise InvalidRequest("Parameter 'coding' must be a Coding with a code")
        system, code = coding.get("system"), coding["code"]
    else:
        system, code = params.text("system"), params.text("code")
    if not code:
        raise InvalidRequest("Parameter 'code' (or 'coding') is required")
    if system_required and not system:
        raise InvalidRequest("Parameter 'system' is required with 'code'")
    return system, code


def _value_set(server: Server, request: FhirRequest, params: OperationParameters) -> Expansion:
    if "id" in request.path_params:
        stored = server.resources.read("ValueSet", request.path_params["id"], identity=request.identity)
        if stored.get("url") and server.terminology.has_value_set(stored["url"]):
            return server.terminology.value_set(stored["url"])
        return server.terminology.expand_resource(stored)
    posted = params.get("valueSet")
    if isinstance(posted, dict) and posted.get("resourceType") == "ValueSet":
        return server.terminology.expand_resource(posted)
    url = params.text("url")
    if not url:
        raise InvalidRequest("Parameter 'url' (or a 'valueSet' resource) is required")
    return server.terminology.value_set(url)


# ---- outputs --------------------------------------------------------------------------------
def _designation(designation: Designation) -> dict:
    parts = []
    if designation.language:
        parts.append({"name": "language", "valueCode": designation.language})
    if designation.use:
        parts.append({"name": "use", "valueCoding": designation.use})
    parts.append({"name": "value", "valueString": designation.value})
    return {"name": "designation", "part": parts}


def _validation(answer: CodeValidation) -> dict:
    out: list[dict] = [{"name": "result", "valueBoolean": answer.result}]
    if answer.message:
        out.append({"name": "message", "valueString": answer.message})
    if answer.display:
        out.append({"name": "display", "valueString": answer.display})
    if answer.unknown_system:
        out.append({"name": "x-caused-by-unknown-system", "valueCanonical": answer.unknown_system})
    return parameters_resource(*out)


def _translation(result: Translation) -> dict:
    out: list[dict] = [{"name": "result", "valueBoolean": result.result}]
    if result.message:
        out.append({"name": "message", "valueString": result.message})
    for match in result.matches:
        parts: list[dict] = [{"name": "equivalence", "valueCode": match.equivalence}]
        if match.code:
            coding = {"system": match.system, "code": match.code}
            if match.display:
                coding["display"] = match.display
            parts.append({"name": "concept", "valueCoding": coding})
        parts.append({"name": "source", "valueUri": match.source})
        out.append({"name": "match", "part": parts})
    return parameters_resource(*out)
