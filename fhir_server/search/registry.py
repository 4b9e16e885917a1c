"""The search-parameter registry: every SearchParameter the server knows, compiled once.

Sources, in order (a later one with the same type and code replaces an earlier one):
1. the official R4B SearchParameters vendored in ``profiles/fhir-r4b/search-parameters.json``;
2. local SearchParameter JSON files in ``profiles/search-parameters/``;
3. active SearchParameter resources stored in the database (POSTed by clients; they index new
   writes at once and existing data after ``$reindex``).

Parameters listed in ``profiles/fhir-r4b/unsupported-search-parameters.json`` (and any of type
``special``) are skipped with a reason, so that search answers "not supported" for them and the
CapabilityStatement does not list them. Search and the CapabilityStatement both read this registry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fhir_server.search.fhirpath import compile_expression, compile_relative

log = logging.getLogger(__name__)

# Served from columns of the resource table, not from index rows.
RESOURCE_COLUMNS = {"_id", "_lastUpdated"}
# The result parameters of the search framework (not SearchParameters).
CONTROL_PARAMETERS = {
    "_sort", "_count", "_include", "_revinclude", "_summary", "_elements", "_total",
    "_format", "_pretty", "_contained", "_containedType", "_offset", "_page",
}
PARAM_TYPES = {"number", "date", "string", "token", "reference", "composite", "quantity", "uri"}


@dataclass(frozen=True)
class Component:
    param: SearchParam
    expression: str
    extract: Callable[[dict], list]


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str
    url: str
    resource_type: str
    expression: str
    description: str = ""
    targets: tuple[str, ...] = ()
    extract: Callable[[dict], list] | None = field(default=None, compare=False, repr=False)
    components: tuple[Component, ...] = field(default=(), compare=False, repr=False)

    @property
    def from_columns(self) -> bool:
        return self.code in RESOURCE_COLUMNS


_HL7 = "http://hl7.org/fhir/SearchParameter/"
# Parameters whose rows would be exactly the rows of the parameters named here (the same
# elements, turned into values the same way): they get no rows of their own and are searched
# through those, when those are the HL7 definitions too. Observation's combo-* search the
# resource's own element and its components together (a blood pressure writes 16 index rows
# instead of 25); ``phonetic`` of a person is its ``name`` (this server matches names as strings).
UNIONS = {
    _HL7 + "Observation-combo-code": ("code", "component-code"),
    _HL7 + "Observation-combo-value-quantity": ("value-quantity", "component-value-quantity"),
    _HL7 + "Observation-combo-value-concept": ("value-concept", "component-value-concept"),
    _HL7 + "Observation-combo-data-absent-reason": ("data-absent-reason", "component-data-absent-reason"),
    _HL7 + "Observation-combo-code-value-quantity": ("code-value-quantity", "component-code-value-quantity"),
    _HL7 + "Observation-combo-code-value-concept": ("code-value-concept", "component-code-value-concept"),
    _HL7 + "individual-phonetic": ("name",),
}


class SearchParamRegistry:
    def __init__(self, supported_types: Iterable[str]):
        self.supported_types = frozenset(supported_types)
        self._by_type: dict[str, dict[str, SearchParam]] = {t: {} for t in self.supported_types}
        self._definitions: dict[str, dict] = {}  # url -> SearchParameter resource
        self.skipped: dict[str, str] = {}  # url -> reason

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def from_profiles(cls, profiles_dir: Path) -> SearchParamRegistry:
        base = profiles_dir / "fhir-r4b"
        supported = json.loads((base / "supported-types.json").read_text())["types"]
        registry = cls(supported)
        unsupported = json.loads((base / "unsupported-search-parameters.json").read_text())
        definitions = [e["resource"] for e in _read_json(base / "search-parameters.json")["entry"]]
        local_dir = profiles_dir / "search-parameters"
        if local_dir.is_dir():
            definitions += [_read_json(p) for p in sorted(local_dir.glob("*.json"))]
        registry.add_all(definitions, unsupported=unsupported["parameters"])
        return registry

    def add_all(self, definitions: Iterable[dict], unsupported: dict[str, str] | None = None) -> None:
        definitions = list(definitions)
        for sp in definitions:
            self._definitions[sp["url"]] = sp
        # Composites refer to their components by URL, so simple parameters go first.
        for sp in sorted(definitions, key=lambda d: d.get("type") == "composite"):
            reason = (unsupported or {}).get(sp["url"])
            if reason:
                self.skipped[sp["url"]] = reason
                continue
            self.add(sp)

    def add(self, definition: dict) -> list[SearchParam]:
        """Compile and register one SearchParameter resource; returns what was registered."""
        url = definition.get("url", "")
        self._definitions[url] = definition
        ptype = definition.get("type")
        if ptype not in PARAM_TYPES:
            self.skipped[url] = f"search parameter type {ptype!r} is not supported"
            return []
        added = []
        for rtype in self._bases(definition):
            param = self._compile(definition, rtype)
            if param is not None:
                # copy-on-write: searches running in other threads keep a consistent view
                self._by_type[rtype] = {**self._by_type[rtype], param.code: param}
                added.append(param)
        return added

    def remove(self, url: str) -> None:
        """Stop applying the parameter defined at ``url`` (a deleted or retired SearchParameter)."""
        for rtype, params in self._by_type.items():
            if any(p.url == url for p in params.values()):
                self._by_type[rtype] = {code: p for code, p in params.items() if p.url != url}

    def _bases(self, definition: dict) -> list[str]:
        bases = definition.get("base", [])
        if "Resource" in bases or "DomainResource" in bases:
            return sorted(self.supported_types)
        return [b for b in bases if b in self.supported_types]

    def _compile(self, definition: dict, rtype: str) -> SearchParam | None:
        code, expression = definition["code"], definition.get("expression", "")
        common = dict(
            code=code, type=definition["type"], url=definition.get("url", ""), resource_type=rtype,
            expression=expression, description=definition.get("description", ""),
            targets=tuple(definition.get("target", ())),
        )
        if code in RESOURCE_COLUMNS:
            return SearchParam(**common)
        extract = compile_expression(expression, rtype) if expression else None
        if extract is None:
            return None
        components: tuple[Component, ...] = ()
        if definition["type"] == "composite":
            parts = []
            for comp in definition.get("component", []):
                part_def = self._definitions.get(comp["definition"])
                if part_def is None or part_def.get("type") not in PARAM_TYPES - {"composite"}:
                    self.skipped[common["url"]] = f"component {comp['definition']} is not available"
                    return None
                part = SearchParam(
                    code=part_def["code"], type=part_def["type"], url=part_def["url"],
                    resource_type=rtype, expression=comp["expression"],
                )
                parts.append(Component(part, comp["expression"], compile_relative(comp["expression"])))
            components = tuple(parts)
        return SearchParam(**common, extract=extract, components=components)

    # ---- lookup --------------------------------------------------------------------------
    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self._by_type.get(resource_type, {}).get(code)

    def params_for(self, resource_type: str) -> dict[str, SearchParam]:
        return self._by_type.get(resource_type, {})

    def union_parts(self, param: SearchParam) -> tuple[SearchParam, ...] | None:
        """The parameters whose index rows together are ``param``'s (``UNIONS``), when all of
        them apply to its type; else None, and ``param`` is indexed on its own."""
        codes = UNIONS.get(param.url)
        if codes is None:
            return None
        params = self.params_for(param.resource_type)
        parts = tuple(params.get(code) for code in codes)
        if any(part is None or not part.url.startswith(_HL7) or part.type != param.type for part in parts):
            return None
        return parts

    def definition(self, url: str) -> dict | None:
        return self._definitions.get(url)

    def reference_params_targeting(self, resource_type: str, target: str) -> list[SearchParam]:
        """Reference parameters of ``resource_type`` that may point at ``target`` (for _revinclude *)."""
        return [
            p for p in self.params_for(resource_type).values()
            if p.type == "reference" and (not p.targets or target in p.targets)
        ]


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
