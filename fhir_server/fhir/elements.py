"""``_summary`` and ``_elements``: subsets of a resource, marked SUBSETTED as the spec asks."""

from __future__ import annotations

from functools import cache

from fhir_server.fhir.models import model_class

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def summary_elements(resource_type: str) -> frozenset[str]:
    """Top-level JSON names of the elements marked isSummary for this type (choice names expanded)."""
    cls = model_class(resource_type)
    if cls is None:
        return frozenset(_ALWAYS)
    names = {
        field.alias or name
        for name, field in cls.model_fields.items()
        if (field.json_schema_extra or {}).get("summary_element_property")
    }
    return frozenset(names) | set(_ALWAYS)


def _subset(resource: dict, keep) -> dict:
    out = {k: v for k, v in resource.items() if keep(k)}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out


def summary(resource: dict, mode: str) -> dict:
    """``true``: summary elements; ``text``: text, id, meta and mandatory; ``data``: all but text."""
    rtype = resource.get("resourceType", "")
    if mode == "true":
        wanted = summary_elements(rtype)
        return _subset(resource, lambda k: k in wanted or k.lstrip("_") in wanted)
    if mode == "text":
        return _subset(resource, lambda k: k in _ALWAYS or k == "text" or k in _mandatory(rtype))
    if mode == "data":
        return _subset(resource, lambda k: k != "text")
    return resource


def elements(resource: dict, names: tuple[str, ...]) -> dict:
    wanted = {n.split(".", 1)[-1] if n.startswith(resource.get("resourceType", "") + ".") else n for n in names}
    rtype = resource.get("resourceType", "")
    return _subset(resource, lambda k: k in _ALWAYS or k.lstrip("_") in wanted or k in _mandatory(rtype))


@cache
def _mandatory(resource_type: str) -> frozenset[str]:
    """Top-level elements with minimum cardinality 1 (complex ones, and primitives such as
    Observation.status, which the models list separately so an extension may stand in)."""
    cls = model_class(resource_type)
    if cls is None:
        return frozenset()
    complex_required = {
        field.alias or name for name, field in cls.model_fields.items()
        if field.is_required() and (field.json_schema_extra or {}).get("element_property")
    }
    primitives = {name for name, _extension in cls.model_construct().get_required_fields()}
    return frozenset(complex_required | primitives)
