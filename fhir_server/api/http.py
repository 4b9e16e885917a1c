"""The request and response shapes every handler sees, independent of FastAPI.

A handler receives a ``FhirRequest`` (path parameters, query pairs, parsed body, Prefer and
If-* headers) and returns a ``FhirResponse`` (status, resource, headers); ``render_response``
turns it into bytes in the format the client asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.responses import Response

from fhir_server.auth.identity import Identity
from fhir_server.errors import information_outcome
from fhir_server.fhir.formats import JSON, XML, parse_body, render


@dataclass
class FhirRequest:
    method: str
    path_params: dict[str, str]
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    raw_body: bytes
    base_url: str
    identity: Identity  # who is calling, established by authentication (fhir_server/auth)
    _body: object = field(default=None, repr=False)

    @property
    def body(self) -> object:
        if self._body is None:
            self._body = parse_body(self.raw_body, self.headers.get("content-type"))
        return self._body

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None

    @property
    def prefer(self) -> dict[str, str]:
        prefs = {}
        for part in (self.header("prefer") or "").split(";"):
            for item in part.split(","):
                key, _, value = item.strip().partition("=")
                if key:
                    prefs[key.lower()] = value.strip().strip('"').lower()
        return prefs

    @property
    def strict(self) -> bool:
        return self.prefer.get("handling") == "strict"


@dataclass
class FhirResponse:
    status: int = 200
    resource: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # a body that is not a FHIR resource (a CDA document), sent as it is with its media type
    content: bytes | None = None
    content_type: str | None = None


def version_headers(resource: dict, base_url: str, location: bool = False) -> dict[str, str]:
    meta = resource.get("meta", {})
    headers = {"ETag": f'W/"{meta.get("versionId", "1")}"'}
    if meta.get("lastUpdated"):
        headers["Last-Modified"] = meta["lastUpdated"]
    if location:
        headers["Location"] = (
            f"{base_url}/{resource['resourceType']}/{resource['id']}/_history/{meta.get('versionId', '1')}"
        )
    return headers


def written(request: FhirRequest, resource: dict, status: int) -> FhirResponse:
    """The response to a create/update/patch, shaped by ``Prefer: return=``."""
    headers = version_headers(resource, request.base_url, location=True)
    preference = request.prefer.get("return", "representation")
    if preference == "minimal":
        return FhirResponse(status, None, headers)
    if preference == "operationoutcome":
        message = f"{resource['resourceType']}/{resource['id']} version {resource['meta']['versionId']} stored"
        return FhirResponse(status, information_outcome(message), headers)
    return FhirResponse(status, resource, headers)


def render_response(response: FhirResponse, media_type: str, pretty: bool) -> Response:
    if response.content is not None:
        return Response(response.content, status_code=response.status, headers=response.headers,
                        media_type=response.content_type)
    if response.resource is None:
        return Response(status_code=response.status, headers=response.headers)
    content_type = f"{XML if media_type == XML else JSON}; charset=utf-8"
    return Response(
        render(response.resource, media_type, pretty), status_code=response.status,
        headers=response.headers, media_type=content_type,
    )
