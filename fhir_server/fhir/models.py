"""Structural validation of FHIR JSON with the fhir.resources R4B models.

The server keeps resources as plain JSON dicts; the pydantic models are used only to check
that a dict is a well-formed resource of the type it claims. Code bindings and profiles are
the validator's job (see issue 3), not this module's.
"""

from __future__ import annotations

import re
from functools import cache

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from fhir_server.errors import InvalidRequest, Issue

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@cache
def model_class(resource_type: str):
    """The R4B model of a resource type, None for any other name (datatypes included)."""
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return None
    return model if issubclass(model, Resource) else None


def is_valid_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value))


def check_resource(resource: object, expected_type: str | None = None) -> dict:
    """Raise InvalidRequest unless ``resource`` is a structurally valid FHIR resource."""
    if not isinstance(resource, dict):
        raise InvalidRequest("The body must be a FHIR resource (a JSON object)")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or model_class(rtype) is None:
        raise InvalidRequest(f"Unknown or missing resourceType {rtype!r}", expression="resourceType")
    if expected_type and rtype != expected_type:
        raise InvalidRequest(
            f"Resource type {rtype} does not match the endpoint type {expected_type}",
            expression="resourceType",
        )
    try:
        model_class(rtype).model_validate(resource)
    except ValidationError as exc:
        raise InvalidRequest(
            f"{rtype} is not valid FHIR", issues=_issues_from(rtype, exc)
        ) from None
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"{rtype} is not valid FHIR: {exc}") from None
    return resource


def _issues_from(rtype: str, exc: ValidationError) -> list[Issue]:
    issues = []
    for err in exc.errors()[:50]:
        path = ".".join(str(p) for p in err.get("loc", ()) if not str(p).startswith("function-"))
        location = f"{rtype}.{path}" if path else rtype
        issues.append(Issue("error", "structure", f"{location}: {err.get('msg')}", (location,)))
    return issues
