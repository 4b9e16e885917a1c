"""``$validate``: check a resource against FHIR and the county profiles without storing it.

Implements http://hl7.org/fhir/OperationDefinition/Resource-validate (R4/R4B):

- ``POST [base]/[type]/$validate`` with the resource as the body, or a Parameters body with
  ``resource``, ``mode`` and ``profile``;
- ``GET`` / ``POST [base]/[type]/[id]/$validate``: the stored resource (GET, or POST without
  a resource), or the one posted as its next version (``mode=update``). The stored resource
  is read with the caller's identity: outside its organisation's scope it is a 404.

The answer is always ``200`` with an OperationOutcome: the FHIR structure errors (the same
check as a write), then the issues of every county profile the resource claims and of the
``profile`` parameter; ``information`` "no issues" when there is nothing to say. Outside the
outcome: an unknown ``profile`` or ``mode`` is 400, an unknown instance 404.

``mode``: ``create`` and ``update`` (default) check the resource (``update`` also that its id
is the instance's); ``delete`` has no rule that forbids a delete, so it answers "no issues";
``profile`` checks only the named profile.
"""

from __future__ import annotations

from fhir_server.api.http import FhirRequest, FhirResponse
from fhir_server.errors import FhirError, InvalidRequest, Issue, operation_outcome
from fhir_server.fhir.models import check_resource
from fhir_server.operations.parameters import OperationParameters, operation_parameters
from fhir_server.server import Server

MODES = ("create", "update", "delete", "profile")


def type_level(server: Server, request: FhirRequest) -> FhirResponse:
    resource, params = _inputs(request)
    if resource is None:
        raise InvalidRequest("$validate at type level needs a resource (the body or the 'resource' parameter)")
    return _outcome(server, resource, request.path_params["type"], params, None)


def instance(server: Server, request: FhirRequest) -> FhirResponse:
    rtype, res_id = request.path_params["type"], request.path_params["id"]
    resource, params = _inputs(request)
    if resource is None:
        resource = server.resources.read(rtype, res_id, identity=request.identity)
    return _outcome(server, resource, rtype, params, res_id)


def _inputs(request: FhirRequest) -> tuple[dict | None, OperationParameters]:
    """The resource to validate (None when not given) and the operation's parameters."""
    if request.method == "POST" and request.raw_body.strip():
        body = request.body
        if isinstance(body, dict) and body.get("resourceType") != "Parameters":
            return body, OperationParameters(list(request.query))
        params = operation_parameters(request)
        resource = params.get("resource")
        if resource is not None and not isinstance(resource, dict):
            raise InvalidRequest("The 'resource' parameter must hold a resource")
        return resource, params
    return None, OperationParameters(list(request.query))


def _outcome(server: Server, resource: dict, rtype: str, params: OperationParameters,
             res_id: str | None) -> FhirResponse:
    mode = params.text("mode") or "update"
    if mode not in MODES:
        raise InvalidRequest(f"Unknown $validate mode {mode!r}; expected one of {', '.join(MODES)}")
    named = [str(p) for p in params.all("profile") if p]
    unknown = [p for p in named if not server.validator.knows(p)]
    if unknown:
        raise InvalidRequest(f"The profile {unknown[0]} is not known to this server")
    if mode == "profile" and not named:
        raise InvalidRequest("mode=profile needs a 'profile' parameter")
    issues: list[Issue] = []
    if mode != "delete":
        issues = _check(server, resource, rtype, named, mode, res_id)
    if not issues:
        issues = [Issue("information", "informational", "No issues found")]
    return FhirResponse(200, operation_outcome(issues))


def _check(server: Server, resource: dict, rtype: str, named: list[str], mode: str,
           res_id: str | None) -> list[Issue]:
    try:
        check_resource(resource, rtype)
    except FhirError as error:
        return list(error.issues)
    issues: list[Issue] = []
    if mode == "update" and res_id is not None and resource.get("id") != res_id:
        issues.append(Issue("error", "invalid", f"The resource id {resource.get('id')!r} is not the "
                            f"instance id {res_id!r}", ("id",)))
    profiles = list(named) if mode == "profile" else list(dict.fromkeys(
        [*server.validator.claimed(resource), *(p.split("|", 1)[0] for p in named)]))
    return issues + server.validator.validate(resource, profiles)
