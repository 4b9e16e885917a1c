"""Turn a resource into index rows: generic, driven by the search-parameter registry.

For each parameter of the resource's type, the compiled FHIRPath finds the elements, and the
index kind of the parameter turns each element into rows. A composite parameter indexes each
matching element's components under ``<code>~<n>`` with a shared group number, so that a search
can require both parts to come from the same element (the same blood-pressure component).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import NamedTuple

from fhir_server.search.registry import SearchParam, SearchParamRegistry
from fhir_server.storage.index import date, number, quantity, reference, string, token, uri

log = logging.getLogger(__name__)

KINDS = {m.KIND: m for m in (string, token, date, number, quantity, reference, uri)}
LOINC = "http://loinc.org"


class IndexRow(NamedTuple):
    kind: str
    code: str
    grp: int | None
    values: dict


def component_code(code: str, position: int) -> str:
    return f"{code}~{position}"


def analyte_of(resource: dict) -> str | None:
    """The LOINC code an Observation measures, used to convert mass to molar units."""
    coding = (resource.get("code") or {}).get("coding") if isinstance(resource.get("code"), dict) else None
    for c in coding or ():
        if isinstance(c, dict) and c.get("system") == LOINC and c.get("code"):
            return c["code"]
    return None


class Indexer:
    def __init__(self, registry: SearchParamRegistry):
        self.registry = registry

    def rows(self, resource: dict) -> list[IndexRow]:
        rtype = resource["resourceType"]
        analyte = analyte_of(resource) if rtype == "Observation" else None
        out: list[IndexRow] = []
        for param in self.registry.params_for(rtype).values():
            if param.from_columns or param.extract is None:
                continue
            try:
                if param.type == "composite":
                    out.extend(self._composite(param, resource, analyte))
                else:
                    for node in param.extract(resource):
                        for values in _values(param.type, node, analyte):
                            out.append(IndexRow(param.type, param.code, None, values))
            except Exception:  # one odd element must not make a valid resource unstorable
                log.exception("indexing %s.%s failed; the parameter is skipped", rtype, param.code)
        return out

    def _composite(self, param: SearchParam, resource: dict, analyte: str | None) -> Iterator[IndexRow]:
        for grp, element in enumerate(param.extract(resource)):
            if not isinstance(element, dict):
                continue
            # every component needs a value: most composites of a resource lack one, so stop early
            parts = []
            for position, comp in enumerate(param.components):
                values = [v for node in comp.extract(element) for v in _values(comp.param.type, node, analyte)]
                if not values:
                    break
                parts.append((position, comp.param.type, values))
            else:
                for position, kind, values in parts:
                    for v in values:
                        yield IndexRow(kind, component_code(param.code, position), grp, v)


def _values(kind: str, node, analyte: str | None) -> list[dict]:
    if kind == "quantity":
        return quantity.extract(node, analyte)
    return KINDS[kind].extract(node)
