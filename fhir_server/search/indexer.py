"""Turn a resource into index rows: generic, driven by the search-parameter registry.

For each parameter of the resource's type, the compiled FHIRPath finds the elements, and the
index kind of the parameter turns each element into rows. A composite parameter indexes each
matching element's components under ``<code>~<n>`` with a shared group number, so that a search
can require both parts to come from the same element (the same blood-pressure component).

Cost (this runs on every write): the parameters that make rows are planned once per resource
type, again only when the registry's view of that type changes (it is copy-on-write). A
parameter (or a composite's component) whose paths start at top-level keys the resource (or
element) lacks is skipped without evaluating it: most of a type's parameters find nothing in a
given resource. Within one resource, an element found by several parameters
(``Observation.code`` feeds ``code``, ``combo-code`` and six composites) is converted to values
once per index kind, so the rows of those parameters share their values dicts: treat them as
read-only. The rows are the same as evaluating every parameter on its own (see
tests/search/test_indexer_fast_paths.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
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


class _Values:
    """The values of one resource's elements, each element converted once per index kind.

    ``converter(kind)`` gives the cache of a kind (element id -> (element, values)) and the
    conversion to fill it: ``Observation.code`` feeds ``code``, ``combo-code`` and six
    composites. Elements are kept referenced, so that an id is not reused by another object (a
    fallback result) while the resource is indexed. ``components`` likewise keeps the values of
    a composite's component found in an element, and ``elements`` the elements a composite's
    expression finds (``Observation.component`` for four composites).
    """

    __slots__ = ("analyte", "converters", "components", "elements")

    def __init__(self, analyte: str | None):
        self.analyte = analyte
        self.converters: dict[str, tuple[dict, Callable[[object], list[dict]]]] = {}
        self.components: dict[tuple[int, str, str], tuple[dict, list[dict]]] = {}
        self.elements: dict[str, list] = {}

    def converter(self, kind: str) -> tuple[dict[int, tuple[object, list[dict]]], Callable[[object], list[dict]]]:
        found = self.converters.get(kind)
        if found is None:
            extract = KINDS[kind].extract
            if kind == "quantity":
                extract = partial(extract, analyte=self.analyte)
            found = self.converters[kind] = ({}, extract)
        return found

    def of(self, kind: str, node) -> list[dict]:
        seen, extract = self.converter(kind)
        hit = seen.get(id(node))
        if hit is None:
            hit = seen[id(node)] = (node, extract(node))
        return hit[1]


class _Component(NamedTuple):
    kind: str
    expression: str
    extract: Callable[[dict], list]
    roots: frozenset | None  # the keys its path starts at (None: any)


class _Planned(NamedTuple):
    """A parameter that makes index rows, with the top-level keys its expression starts at."""
    param: SearchParam
    roots: frozenset | None  # None: any resource may have values
    components: tuple[_Component, ...]


class Indexer:
    def __init__(self, registry: SearchParamRegistry):
        self.registry = registry
        # resource type -> (the registry's parameter dict it was built from, its plan)
        self._plans: dict[str, tuple[dict[str, SearchParam], tuple[_Planned, ...]]] = {}

    def rows(self, resource: dict) -> list[IndexRow]:
        rtype = resource["resourceType"]
        values = _Values(analyte_of(resource) if rtype == "Observation" else None)
        keys = resource.keys()
        out: list[IndexRow] = []
        for planned in self._plan(rtype):
            if planned.roots is not None and keys.isdisjoint(planned.roots):
                continue  # its path starts at an element the resource lacks
            param = planned.param
            try:
                if planned.components:
                    _composite(planned, resource, values, out)
                    continue
                kind, code = param.type, param.code
                seen, extract = values.converter(kind)
                written: set[tuple] = set()  # one row per value: a repeated one finds nothing more
                for node in param.extract(resource):
                    hit = seen.get(id(node))  # values.of(kind, node), inlined: the hottest loop
                    if hit is None:
                        hit = seen[id(node)] = (node, extract(node))
                    for v in hit[1]:
                        same = tuple(v.values())
                        if same not in written:
                            written.add(same)
                            out.append(_index_row((kind, code, None, v)))
            except Exception:  # one odd element must not make a valid resource unstorable
                log.exception("indexing %s.%s failed; the parameter is skipped", rtype, param.code)
        return out

    def _plan(self, rtype: str) -> tuple[_Planned, ...]:
        """The parameters of ``rtype`` that make index rows, planned again only when the
        registry replaces its dict for the type (a SearchParameter added or removed)."""
        params = self.registry.params_for(rtype)
        plan = self._plans.get(rtype)
        if plan is None or plan[0] is not params:
            planned = tuple(_planned(p) for p in params.values()
                            if not p.from_columns and p.extract is not None
                            and (p.type != "composite" or p.components)
                            and self.registry.union_parts(p) is None)  # its parts' rows serve it
            plan = (params, planned)
            if rtype in self.registry.supported_types:  # not one plan per unknown type name
                self._plans[rtype] = plan
        return plan[1]


def _planned(param: SearchParam) -> _Planned:
    components = tuple(_Component(c.param.type, c.expression, c.extract, _roots(c.extract))
                       for c in param.components)
    return _Planned(param, _roots(param.extract), components)


def _roots(extract) -> frozenset | None:
    """The top-level keys a compiled expression reads first (see fhirpath), None if unknown."""
    return getattr(extract, "roots", None)


def _composite(planned: _Planned, resource: dict, values: _Values, out: list[IndexRow]) -> None:
    """Append the rows of a composite parameter, one group of components at a time."""
    param = planned.param
    elements = values.elements.get(param.expression)
    if elements is None:  # the same expression on the same resource type: the same elements
        elements = values.elements[param.expression] = param.extract(resource)
    code = param.code
    cache = values.components
    for grp, element in enumerate(elements):
        if not isinstance(element, dict):
            continue
        # every component needs a value: most composites of a resource lack one, so stop early,
        # first where a component's path cannot start
        keys = element.keys()
        for comp in planned.components:
            if comp.roots is not None and keys.isdisjoint(comp.roots):
                break
        else:
            parts = []
            for comp in planned.components:
                key = (id(element), comp.kind, comp.expression)
                hit = cache.get(key)
                if hit is None:
                    hit = cache[key] = (element, [v for node in comp.extract(element)
                                                  for v in values.of(comp.kind, node)])
                if not hit[1]:
                    break
                parts.append((comp.kind, hit[1]))
            else:
                for position, (kind, found) in enumerate(parts):
                    part_code = component_code(code, position)
                    out += [_index_row((kind, part_code, grp, v)) for v in found]


# IndexRow(...) without the Python-level __new__ of a NamedTuple: this makes every row.
_index_row = partial(tuple.__new__, IndexRow)
