"""``$translate`` over ConceptMap resources (FHIR R4: ``group.element.target.equivalence``).

A translation walks the groups of the chosen maps: forwards, from ``group.source`` codes to
their targets; in reverse, from target codes back to the source codes that map to them (with
``wider`` and ``narrower``, ``subsumes`` and ``specializes`` swapped). ``group.unmapped`` is not
used. The result is true when at least one match is neither ``unmatched`` nor ``disjoint``.
"""

from __future__ import annotations

from dataclasses import dataclass

_NO_MATCH = ("unmatched", "disjoint")
_REVERSED = {"wider": "narrower", "narrower": "wider", "subsumes": "specializes", "specializes": "subsumes"}


@dataclass(frozen=True)
class TranslationMatch:
    equivalence: str
    system: str | None
    code: str | None  # None for an ``unmatched`` entry
    display: str | None
    source: str  # the ConceptMap's url
    comment: str | None = None


@dataclass(frozen=True)
class Translation:
    result: bool
    message: str | None
    matches: tuple[TranslationMatch, ...]


def translate(
    concept_maps: list[dict], system: str, code: str, *, target_system: str | None = None, reverse: bool = False,
) -> Translation:
    matches: list[TranslationMatch] = []
    walk = _backward if reverse else _forward
    for concept_map in concept_maps:
        for group in concept_map.get("group") or []:
            matches += walk(concept_map.get("url", ""), group, system, code, target_system)
    if any(m.equivalence not in _NO_MATCH for m in matches):
        return Translation(True, None, tuple(matches))
    comments = "; ".join(m.comment for m in matches if m.comment)
    where = f" in {concept_maps[0].get('url')}" if len(concept_maps) == 1 else ""
    message = f"No mapping of {system}#{code}{where}"
    return Translation(False, f"{message}: {comments}" if comments else message, tuple(matches))


def _forward(url: str, group: dict, system: str, code: str, target_system: str | None) -> list[TranslationMatch]:
    if group.get("source") != system or target_system not in (None, group.get("target")):
        return []
    return [
        TranslationMatch(t.get("equivalence", "equivalent"), group.get("target") if t.get("code") else None,
                         t.get("code"), t.get("display"), url, t.get("comment"))
        for element in group.get("element") or [] if element.get("code") == code
        for t in element.get("target") or []
    ]


def _backward(url: str, group: dict, system: str, code: str, target_system: str | None) -> list[TranslationMatch]:
    if group.get("target") != system or target_system not in (None, group.get("source")):
        return []
    return [
        TranslationMatch(_REVERSED.get(t.get("equivalence", ""), t.get("equivalence", "equivalent")),
                         group.get("source"), element.get("code"), element.get("display"), url, t.get("comment"))
        for element in group.get("element") or []
        for t in element.get("target") or [] if t.get("code") == code
    ]


def map_source(concept_map: dict) -> str | None:
    return concept_map.get("sourceUri") or concept_map.get("sourceCanonical")


def map_target(concept_map: dict) -> str | None:
    return concept_map.get("targetUri") or concept_map.get("targetCanonical")


__all__ = ["Translation", "TranslationMatch", "map_source", "map_target", "translate"]
