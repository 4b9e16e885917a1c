"""The terminology service: the shipped CodeSystems, ValueSets and ConceptMaps, loaded once.

Built at start-up from every ``*.json`` file under ``settings.terminology_dir`` whose
``resourceType`` is CodeSystem, ValueSet or ConceptMap (other JSON there, such as ``ucum/``, is
not a terminology resource and is skipped). Every value set is expanded at load, so a broken
file stops the server at start-up rather than at the first request. Canonical URLs may carry a
``|version`` suffix, which is ignored (one version of each resource is loaded).

The API (``server.terminology``), stable for the profile validator and the operations:

``validate_code(valueset_url, system, code, display=None) -> CodeValidation``
    ``result`` (bool), ``message`` (why not, or None), ``display`` (the concept's English
    display), ``unknown_system``: set (to the code system's URL) when ``result`` is False only
    because the value set includes all of a code system the server holds only in part (LOINC,
    ICD-10: fragments) or not at all, and the code is not in what it holds. A validator
    should report that as a warning, not as an error: the code may well be valid.
    A ``display`` is accepted when it is the English display or any designation (Chinese).
    Raises ``NotFound`` for an unknown value set (``has_value_set`` tells beforehand).
``validate_codings(valueset_url, codings) -> CodeValidation``
    for a CodeableConcept: valid when one of its codings is.
``lookup(system, code, version=None, display_language=None) -> Lookup``
    display, designations (zh-CN), definition; ``NotFound`` for an unknown system or code.
``expand(valueset_url, filter=None, offset=0, count=None, display_language=None,
include_designations=False) -> dict``
    the ValueSet with its ``expansion``; ``filter`` keeps concepts whose code, English display
    or Chinese designation contains every word of it (case-insensitive), for a type-ahead picker.
``translate(code, system, url=None, source=None, target=None, target_system=None,
reverse=False) -> Translation``
    through one ConceptMap (``url``) or every map matching ``source``/``target`` value sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from fhir_server.errors import InvalidRequest, NotFound, Unprocessable
from fhir_server.terminology.code_systems import CodeSystem, Designation
from fhir_server.terminology.concept_maps import Translation, map_source, map_target, translate
from fhir_server.terminology.value_sets import CodeValidation, Expansion, expand

KINDS = ("CodeSystem", "ValueSet", "ConceptMap")


@dataclass(frozen=True)
class Lookup:
    system: str
    name: str | None
    version: str | None
    display: str | None
    designations: tuple[Designation, ...]
    definition: str | None


class TerminologyService:
    def __init__(self, resources: list[dict]):
        self.resources: tuple[dict, ...] = tuple(resources)
        by_kind: dict[str, dict[str, dict]] = {kind: {} for kind in KINDS}
        for resource in resources:
            kind, url = resource["resourceType"], resource.get("url")
            if not url:
                raise ValueError(f"{kind}/{resource.get('id')} has no url")
            if url in by_kind[kind]:
                raise ValueError(f"Two {kind} resources have the url {url}")
            by_kind[kind][url] = resource
        self.code_systems = {url: CodeSystem.from_resource(r) for url, r in by_kind["CodeSystem"].items()}
        self._value_sets = by_kind["ValueSet"]
        self._concept_maps = by_kind["ConceptMap"]
        self._expansions: dict[str, Expansion] = {}
        self._expanding: list[str] = []
        for url in self._value_sets:
            self.value_set(url)

    @classmethod
    def load(cls, directory: Path) -> TerminologyService:
        resources = []
        for path in sorted(directory.rglob("*.json")):
            content = orjson.loads(path.read_bytes())
            if isinstance(content, dict) and content.get("resourceType") in KINDS:
                resources.append(content)
        return cls(resources)

    # ---- value sets -------------------------------------------------------------------------
    def has_value_set(self, url: str) -> bool:
        return _canonical(url) in self._value_sets

    def value_set(self, url: str) -> Expansion:
        """The expansion of a shipped value set (``NotFound`` when there is none)."""
        url = _canonical(url)
        if url in self._expansions:
            return self._expansions[url]
        if url not in self._value_sets:
            raise NotFound(f"The value set {url} is not known to this server")
        if url in self._expanding:
            raise Unprocessable(f"The value set {url} includes itself ({' -> '.join(self._expanding)})")
        self._expanding.append(url)
        try:
            self._expansions[url] = self.expand_resource(self._value_sets[url])
        finally:
            self._expanding.pop()
        return self._expansions[url]

    def expand_resource(self, resource: dict) -> Expansion:
        """The expansion of any ValueSet resource (e.g. one a client stored), not cached."""
        return expand(resource, self.code_systems, self.value_set)

    def validate_code(
        self, valueset_url: str, system: str | None, code: str, display: str | None = None,
    ) -> CodeValidation:
        return self.value_set(valueset_url).validate(system, code, display)

    def validate_codings(self, valueset_url: str, codings: list[dict]) -> CodeValidation:
        return validate_codings(self.value_set(valueset_url), codings)

    def expand(
        self, valueset_url: str, filter: str | None = None, offset: int = 0, count: int | None = None,
        display_language: str | None = None, include_designations: bool = False,
    ) -> dict:
        return self.value_set(valueset_url).page(
            text_filter=filter, offset=offset, count=count, display_language=display_language,
            include_designations=include_designations)

    # ---- code systems -----------------------------------------------------------------------
    def lookup(
        self, system: str, code: str, version: str | None = None, display_language: str | None = None,
    ) -> Lookup:
        code_system = self.code_systems.get(_canonical(system))
        if code_system is None:
            raise NotFound(f"The code system {system} is not known to this server")
        if version and code_system.version and version != code_system.version:
            raise NotFound(f"The server holds version {code_system.version} of {system}, not {version}")
        concept = code_system.find(code)
        if concept is None:
            held = "" if code_system.complete else f" (the server holds only a {code_system.content} of it)"
            raise NotFound(f"The code {code!r} is not in the code system {system}{held}")
        return Lookup(code_system.url, code_system.name, code_system.version, concept.display_in(display_language),
                      concept.designations, concept.definition)

    # ---- concept maps -----------------------------------------------------------------------
    def translate(
        self, code: str, system: str, url: str | None = None, source: str | None = None,
        target: str | None = None, target_system: str | None = None, reverse: bool = False,
    ) -> Translation:
        if url:
            concept_map = self._concept_maps.get(_canonical(url))
            if concept_map is None:
                raise NotFound(f"The concept map {url} is not known to this server")
            maps = [concept_map]
        else:
            maps = [m for m in self._concept_maps.values() if _applies(m, source, target, reverse)]
        return translate_with(maps, system, code, target_system, reverse)


def translate_with(
    maps: list[dict], system: str, code: str, target_system: str | None = None, reverse: bool = False,
) -> Translation:
    if not maps:
        return Translation(False, "No concept map on this server matches the request", ())
    return translate(maps, system, code, target_system=target_system, reverse=reverse)


def validate_codings(expansion: Expansion, codings: list[dict]) -> CodeValidation:
    """A CodeableConcept is in a value set when one of its codings is."""
    if not codings:
        return CodeValidation(False, f"No coding given to check against the value set {expansion.url}")
    answers = []
    for coding in codings:
        if not isinstance(coding, dict) or not coding.get("code"):
            raise InvalidRequest("Each coding must be a Coding with a code")
        answer = expansion.validate(coding.get("system"), coding["code"], coding.get("display"))
        if answer.result:
            return answer
        answers.append(answer)
    unknown = next((a.unknown_system for a in answers if a.unknown_system), None)
    return CodeValidation(False, "; ".join(a.message for a in answers if a.message), None, unknown)


def _applies(concept_map: dict, source: str | None, target: str | None, reverse: bool) -> bool:
    map_from, map_to = map_source(concept_map), map_target(concept_map)
    if reverse:
        map_from, map_to = map_to, map_from
    return source in (None, map_from) and target in (None, map_to)


def _canonical(url: str) -> str:
    return url.split("|", 1)[0]


__all__ = ["CodeValidation", "Lookup", "TerminologyService", "Translation"]
