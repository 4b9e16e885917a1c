"""The OpenAPI description of the FHIR API, built from the route table like the CapabilityStatement.

Resources are described as FHIR JSON objects (their full schemas are the FHIR specification's);
each path names its interaction or operation, its path parameters (the resource type limited to
the supported types) and the OperationOutcome every error returns.
"""

from __future__ import annotations

import re

from fhir_server import __version__

_PATH_PARAM = re.compile(r"{(\w+)}")
_FHIR_BODY = {
    "application/fhir+json": {"schema": {"type": "object", "required": ["resourceType"],
                                         "properties": {"resourceType": {"type": "string"}}}},
    "application/fhir+xml": {"schema": {"type": "string"}},
}
# Operations whose body is not a FHIR resource: the file or document they take.
_OPERATION_BODIES = {
    "$import-cda": {"application/xml": {"schema": {"type": "string"}},
                    "application/hl7-cda+xml": {"schema": {"type": "string"}}},
    "$import-followups": {
        "text/csv": {"schema": {"type": "string"}},
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
            "schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
    },
}
_PATCH_BODY = {"application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object"}}}}
_OUTCOME = {"description": "OperationOutcome", "content": {"application/fhir+json": {"schema": {"type": "object"}}}}
_DESCRIPTIONS = {
    "id": "Logical id of the resource",
    "vid": "Version id",
    "type": "Resource type",
}


def openapi_document(routes, supported_types, prefix: str, *, auth_enabled: bool = True,
                     public_interactions: frozenset[str] = frozenset()) -> dict:
    """The document; with ``auth_enabled`` every path but the public ones needs a bearer token
    (SMART client credentials at ``/auth/token``), as the server enforces."""
    paths: dict[str, dict] = {}
    for route in routes:
        path = prefix + route.path
        operation = _operation(route, sorted(supported_types))
        if auth_enabled and route.interaction in public_interactions:
            operation["security"] = []
        paths.setdefault(path, {})[route.method.lower()] = operation
    document = {
        "openapi": "3.0.3",
        "info": {"title": "County chronic-disease FHIR server", "version": __version__,
                 "description": "FHIR R4 REST API (JSON and XML). Every error is an OperationOutcome."},
        "paths": paths,
    }
    if auth_enabled:
        document["components"] = {"securitySchemes": _SECURITY_SCHEMES}
        document["security"] = [{name: []} for name in _SECURITY_SCHEMES]
    return document


_SECURITY_SCHEMES = {
    "smart": {
        "type": "oauth2",
        "description": "SMART on FHIR backend services: a registered client's credentials "
                       "(client_secret_basic or private_key_jwt) exchanged for an access token.",
        "flows": {"clientCredentials": {
            "tokenUrl": "/auth/token",
            "scopes": {"system/*.cruds": "every interaction on every type (narrowed to the client's scopes)",
                       "system/*.rs": "read and search every type"},
        }},
    },
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "An access token from /auth/token or the configured OpenID Connect provider."},
}


def _operation(route, types: list[str]) -> dict:
    name = route.operation or route.interaction or "operation"
    parameters = []
    for param in _PATH_PARAM.findall(route.path):
        schema = {"type": "string", "enum": types} if param == "type" else {
            "type": "string", "pattern": r"^[A-Za-z0-9\-.]{1,64}$"}
        parameters.append({"name": param, "in": "path", "required": True,
                           "description": _DESCRIPTIONS.get(param, param), "schema": schema})
    parameters.append({"name": "_format", "in": "query", "required": False,
                       "schema": {"type": "string", "enum": ["json", "xml"]}})
    operation = {
        "operationId": f"{route.method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', route.path)}",
        "summary": f"{name} ({route.level} level)",
        "tags": [name.lstrip("$")],
        "parameters": parameters,
        "responses": {"200": {"description": "FHIR resource or Bundle",
                              "content": {"application/fhir+json": {"schema": {"type": "object"}}}},
                      "401": {**_OUTCOME, "description": "No valid access token (OperationOutcome)"},
                      "403": {**_OUTCOME, "description": "The token's scopes do not allow this (OperationOutcome)"},
                      "default": _OUTCOME},
    }
    if route.method == "POST" and route.operation in _OPERATION_BODIES:
        operation["requestBody"] = {"required": True, "content": _OPERATION_BODIES[route.operation]}
    elif route.method in ("POST", "PUT"):
        operation["requestBody"] = {"required": route.operation is None, "content": _FHIR_BODY}
    elif route.method == "PATCH":
        operation["requestBody"] = {"required": True, "content": _PATCH_BODY}
    if route.interaction in ("create", "update"):
        operation["responses"]["201"] = {"description": "Created"}
    return operation
