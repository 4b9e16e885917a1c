"""Structural validation of FHIR JSON against the fhir.resources R4B models.

The server keeps resources as plain JSON dicts; the models are used only to decide whether
a dict is a well-formed resource of the type it claims. A dict that the compiled checker
(``structure``) accepts is well-formed for the models too, so only the dicts it refuses
(rare on the write path) go through the pydantic model, whose verdict and errors stand.
Code bindings and profiles are the validator's job (see issue 3), not this module's.
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from fhir_server.errors import InvalidRequest, Issue
from fhir_server.fhir.structure import Problem, model_class, structure_problem

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


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
    problem = structure_problem(resource)
    if problem is None:
        return resource
    # The checker is stricter than the model where the model is lax (e.g. JSON text in a
    # string for an object): the model has the last word, and its errors name the elements.
    try:
        model_class(rtype).model_validate(resource)
    except ValidationError as exc:
        raise InvalidRequest(
            f"{rtype} is not valid FHIR", issues=_issues_from(rtype, exc)
        ) from None
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"{rtype} is not valid FHIR: {exc}") from None
    except Exception:  # noqa: BLE001 - fhir_core fails without a verdict on some faults
        # (KeyError: unknown resourceType of a contained resource; AttributeError: a url that
        # is not a string; InvalidOperation: a decimal exponent too large; RecursionError)
        raise InvalidRequest(f"{rtype} is not valid FHIR", issues=[_issue(problem)]) from None
    return resource


def _issues_from(rtype: str, exc: ValidationError) -> list[Issue]:
    issues = []
    for err in exc.errors()[:50]:
        path = ".".join(str(p) for p in err.get("loc", ()) if not str(p).startswith("function-"))
        location = f"{rtype}.{path}" if path else rtype
        issues.append(Issue("error", "structure", f"{location}: {err.get('msg')}", (location,)))
    return issues


def _issue(problem: Problem) -> Issue:
    return Issue("error", "structure", f"{problem.location}: {problem.message}", (problem.location,))
