"""The CapabilityStatement, built from the route table and the search-parameter registry.

Nothing here is written by hand: a type is listed with the interactions its routes serve, the
search parameters the registry compiled for it, and the operations routed for it, so the
statement cannot claim more (or less) than the server does.
"""

from __future__ import annotations

from fhir_server import FHIR_VERSION, __version__
from fhir_server.auth.smart import rest_security

_TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance",
                      "history-type", "create", "search-type")
_SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")


def capability_statement(server, routes, base_url: str) -> dict:
    served = {r.interaction for r in routes if r.interaction}
    if "transaction" in served:
        served.add("batch")
    resources = [_resource(server, rtype, served, routes) for rtype in sorted(server.registry.supported_types)]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "publisher": "county-fhir",
        "kind": "instance",
        "software": {"name": "county-fhir", "version": __version__},
        "implementation": {"description": "County chronic-disease network FHIR server", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "xml", "application/fhir+json", "application/fhir+xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            **({"security": rest_security(base_url, bool(server.settings.cors_origin_list))}
               if server.settings.auth_enabled else {}),
            "resource": resources,
            "interaction": [{"code": c} for c in _SYSTEM_INTERACTIONS if c in served],
            "operation": [
                {"name": r.operation.lstrip("$"), "definition": _operation_url(server, r.operation)}
                for r in _unique_operations(routes, "system")
            ],
        }],
    }


def _resource(server, rtype: str, served: set[str], routes) -> dict:
    params = server.registry.params_for(rtype)
    entry = {
        "type": rtype,
        "interaction": [{"code": c} for c in _TYPE_INTERACTIONS if c in served],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "searchInclude": sorted({f"{rtype}:{p.code}" for p in params.values() if p.type == "reference"}),
        "searchRevInclude": sorted({
            f"{other}:{p.code}"
            for other in server.registry.supported_types
            for p in server.registry.reference_params_targeting(other, rtype)
            if p.targets and rtype in p.targets
        }),
        "searchParam": [
            {"name": p.code, "definition": p.url, "type": p.type, **({"documentation": p.description[:500]} if p.description else {})}
            for p in sorted(params.values(), key=lambda p: p.code)
        ],
    }
    operations = [r for r in _unique_operations(routes, None) if r.level != "system" and r.path.split("/")[1] in (rtype, "{type}")]
    profiles = server.conformance.supported_profiles(rtype)
    if profiles:
        entry["supportedProfile"] = profiles
    if operations:
        entry["operation"] = [{"name": r.operation.lstrip("$"), "definition": _operation_url(server, r.operation)}
                              for r in operations]
    return entry


def _unique_operations(routes, level: str | None):
    seen, out = set(), []
    for route in routes:
        if route.operation and (level is None or route.level == level):
            key = (route.operation, route.path.split("/")[1] if route.level != "system" else "")
            if key not in seen:
                seen.add(key)
                out.append(route)
    return out


def _operation_url(server, name: str) -> str:
    """The operation's OperationDefinition: the specification's, or the one this server ships
    (profiles/operations/, readable at [base]/OperationDefinition/[code])."""
    base = name.lstrip("$")
    standard = {"everything": "Patient-everything", "lastn": "Observation-lastn", "meta": "Resource-meta",
                "meta-add": "Resource-meta-add", "meta-delete": "Resource-meta-delete",
                "lookup": "CodeSystem-lookup", "validate-code": "ValueSet-validate-code",
                "expand": "ValueSet-expand", "translate": "ConceptMap-translate",
                "validate": "Resource-validate"}
    if base in standard:
        return f"http://hl7.org/fhir/OperationDefinition/{standard[base]}"
    shipped = server.conformance.operation_definition(base)
    if shipped is None:
        raise LookupError(f"No OperationDefinition is shipped for {name} (profiles/operations/)")
    return shipped