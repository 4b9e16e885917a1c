"""The RESTful interactions: each handler parses, calls one service and shapes the response.

Every service call carries ``request.identity`` (the caller's access scope), and every read
is handed to the audit trail (``server.audit``), which records it if it touched patient data.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from fhir_server.api.http import FhirRequest, FhirResponse, version_headers, written
from fhir_server.errors import InvalidRequest, NotFound, information_outcome
from fhir_server.fhir.elements import elements, summary
from fhir_server.server import Server
from fhir_server.services.search import searchset_bundle


def _type(server: Server, request: FhirRequest) -> str:
    rtype = request.path_params["type"]
    if rtype not in server.registry.supported_types:
        raise NotFound(f"Resource type {rtype!r} is not supported by this server")
    return rtype


def read(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    resource = server.resources.read(rtype, request.path_params["id"], identity=request.identity)
    server.audit.read(request.identity, "read", [(rtype, resource["id"])])
    if_none_match = request.header("if-none-match")
    headers = version_headers(resource, request.base_url)
    if if_none_match and if_none_match.strip() == headers["ETag"]:
        return FhirResponse(304, None, headers)
    return FhirResponse(200, _shape(request, resource), headers)


def vread(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    resource = server.resources.vread(rtype, request.path_params["id"], request.path_params["vid"],
                                      identity=request.identity)
    server.audit.read(request.identity, "vread", [(rtype, resource["id"])])
    return FhirResponse(200, resource, version_headers(resource, request.base_url))


def create(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    result = server.resources.create(request.body, res_type=rtype, if_none_exist=request.header("if-none-exist"),
                                     identity=request.identity)
    return written(request, result.resource, 201 if result.created else 200)


def update(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    result = server.resources.update(
        rtype, request.path_params["id"], request.body, if_match=request.header("if-match"),
        identity=request.identity,
    )
    return written(request, result.resource, 201 if result.created else 200)


def conditional_update(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    query = _criteria(request, "conditional update")
    result = server.resources.conditional_update(rtype, query, request.body, identity=request.identity)
    return written(request, result.resource, 201 if result.created else 200)


def patch(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    result = server.resources.patch(
        rtype, request.path_params["id"], request.body, if_match=request.header("if-match"),
        identity=request.identity,
    )
    return written(request, result.resource, 200)


def delete(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    version = server.resources.delete(rtype, request.path_params["id"], identity=request.identity)
    headers = {"ETag": f'W/"{version}"'} if version else {}
    message = "Deleted" if version else "Nothing to delete"
    return FhirResponse(200, information_outcome(f"{message}: {rtype}/{request.path_params['id']}"), headers)


def conditional_delete(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    deleted = server.resources.conditional_delete(rtype, _criteria(request, "conditional delete"),
                                                  identity=request.identity)
    return FhirResponse(200, information_outcome(f"Deleted {deleted} {rtype} resource(s)"))


def search(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    pairs = list(request.query)
    if request.method == "POST":  # POST _search: form parameters join the query string
        content_type = (request.header("content-type") or "").split(";")[0].strip()
        if request.raw_body.strip():
            if content_type != "application/x-www-form-urlencoded":
                raise InvalidRequest("POST _search needs an application/x-www-form-urlencoded body")
            pairs += parse_qsl(request.raw_body.decode("utf-8", "replace"), keep_blank_values=True)
    parsed = server.search.parse(rtype, pairs, strict=request.strict)
    result = server.search.search(parsed, identity=request.identity)
    returned = [(s.res_type, s.res_id) for s in (*result.matches, *result.included)]
    server.audit.read(request.identity, "search-type", returned, query=f"{rtype}?{urlencode(pairs)}")
    bundle = searchset_bundle(result, request.base_url, rtype, pairs)
    return FhirResponse(200, bundle)


def history_instance(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    return _history(server, request, rtype, request.path_params["id"], "history-instance")


def history_type(server: Server, request: FhirRequest) -> FhirResponse:
    return _history(server, request, _type(server, request), None, "history-type")


def history_system(server: Server, request: FhirRequest) -> FhirResponse:
    return _history(server, request, None, None, "history-system")


def _history(server: Server, request: FhirRequest, rtype: str | None, rid: str | None,
             interaction: str) -> FhirResponse:
    settings = server.settings
    bundle = server.history.bundle(
        request.base_url, res_type=rtype, res_id=rid, params=dict(request.query), identity=request.identity,
        default_count=settings.default_page_size, max_count=settings.max_page_size,
    )
    server.audit.read(request.identity, interaction, bundle_members(bundle, request.base_url))
    return FhirResponse(200, bundle)


def bundle_members(bundle: dict, base_url: str) -> list[tuple[str, str]]:
    """(type, id) of every entry of a Bundle this server built (from the fullUrls)."""
    members = []
    for entry in bundle.get("entry", ()):
        rtype, _, rid = entry.get("fullUrl", "").removeprefix(base_url + "/").partition("/")
        if rid:
            members.append((rtype, rid))
    return members


def _criteria(request: FhirRequest, what: str) -> str:
    kept = [(k, v) for k, v in request.query if k not in ("_format", "_pretty")]
    if not kept:
        raise InvalidRequest(f"A {what} needs search criteria in the query string")
    return urlencode(kept)


def _shape(request: FhirRequest, resource: dict) -> dict:
    """_summary and _elements on a read."""
    mode = request.param("_summary")
    if mode and mode != "false":
        return summary(resource, mode)
    names = request.param("_elements")
    if names:
        return elements(resource, tuple(n.strip() for n in names.split(",") if n.strip()))
    return resource
