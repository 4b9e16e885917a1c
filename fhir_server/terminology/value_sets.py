"""Value sets expanded once into their members, for ``$expand``, ``$validate-code`` and bindings.

``ValueSet.compose`` is supported with ``include`` and ``exclude`` entries that name a whole
system, a list of concepts, or other value sets (``valueSet``: several of them, and a system
part beside them, are intersected, as the specification says). Filters (``is-a``, regex...) are
not supported: such a value set is refused with 422.

A whole-system include of a system the server does not hold completely (our LOINC and ICD-10
fragments, or a system it does not hold at all) is *open*: its members cannot be listed. Such
a value set cannot be expanded (422), and validating a code of that system that is not in the
fragment answers ``result=False`` with ``unknown_system`` set, so that a caller can tell "not
in the value set" from "cannot be checked here".
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fhir_server.errors import Unprocessable
from fhir_server.terminology.code_systems import CodeSystem, Concept, concept_from

Key = tuple[str, str]  # (system, code)


@dataclass(frozen=True)
class Member:
    system: str
    version: str | None
    concept: Concept


@dataclass(frozen=True)
class CodeValidation:
    """The answer of ``$validate-code``: ``result``, a ``message`` when false (or a hint), the
    concept's ``display``, and ``unknown_system`` when the code could not be checked because
    the server does not hold (all of) that code system."""

    result: bool
    message: str | None = None
    display: str | None = None
    unknown_system: str | None = None


class Expansion:
    """The members of one value set, in the order its compose lists them."""

    def __init__(self, resource: dict, members: dict[Key, Member], open_systems: frozenset[str]):
        self.resource = resource
        self.url = resource.get("url") or f"ValueSet/{resource.get('id')}"
        self.members = members
        self.open_systems = open_systems

    def validate(self, system: str | None, code: str, display: str | None = None) -> CodeValidation:
        if system is None:
            found = [m for (_, c), m in self.members.items() if c == code]
            if len(found) != 1:
                return CodeValidation(False, f"No system given for code {code!r}, and the value set "
                                             f"{self.url} does not identify one")
            member = found[0]
        else:
            member = self.members.get((system, code))
        if member is not None:
            return _check_display(member, display)
        if system in self.open_systems:
            return CodeValidation(
                False, f"The code {system}#{code} could not be checked: the value set {self.url} includes "
                       f"all of {system}, which this server holds only in part", unknown_system=system)
        return CodeValidation(False, f"The code {system}#{code} is not in the value set {self.url}")

    def page(
        self, *, text_filter: str | None = None, offset: int = 0, count: int | None = None,
        display_language: str | None = None, include_designations: bool = False,
    ) -> dict:
        """The value set with an ``expansion`` of the members matching ``text_filter``."""
        if self.open_systems:
            raise Unprocessable(
                f"The value set {self.url} includes all of {', '.join(sorted(self.open_systems))}, which this "
                "server holds only in part: it cannot be expanded")
        words = text_filter.casefold().split() if text_filter else []
        matching = [m for m in self.members.values() if m.concept.matches(words)]
        chosen = matching[offset:None if count is None else offset + count]
        parameters = [("filter", "valueString", text_filter), ("offset", "valueInteger", offset),
                      ("count", "valueInteger", count), ("displayLanguage", "valueCode", display_language)]
        expansion: dict = {
            "identifier": f"urn:uuid:{uuid.uuid4()}",
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "total": len(matching),
            "offset": offset,
            "parameter": [{"name": n, kind: v} for n, kind, v in parameters if v is not None],
        }
        if chosen:
            expansion["contains"] = [_contains(m, display_language, include_designations) for m in chosen]
        head = {k: self.resource[k] for k in ("id", "url", "version", "name", "title", "status")
                if k in self.resource}
        return {"resourceType": "ValueSet", **head, "expansion": expansion}


def expand(
    resource: dict, code_systems: dict[str, CodeSystem], resolve: Callable[[str], Expansion],
) -> Expansion:
    """Expand ``resource``'s compose; ``resolve`` gives the expansion of an imported value set."""
    compose = resource.get("compose") or {}
    members: dict[Key, Member] = {}
    open_systems: set[str] = set()
    for include in compose.get("include") or []:
        found, found_open = _select(include, code_systems, resolve)
        members.update({k: m for k, m in found.items() if k not in members})
        open_systems |= found_open
    for exclude in compose.get("exclude") or []:
        found, found_open = _select(exclude, code_systems, resolve)
        members = {k: m for k, m in members.items() if k not in found and k[0] not in found_open}
        open_systems -= found_open
    return Expansion(resource, members, frozenset(open_systems))


def _select(
    part: dict, code_systems: dict[str, CodeSystem], resolve: Callable[[str], Expansion],
) -> tuple[dict[Key, Member], set[str]]:
    """The members (and open systems) one include or exclude entry selects."""
    if part.get("filter"):
        raise Unprocessable("Value set filters (compose.include.filter) are not supported by this server")
    pieces: list[tuple[dict[Key, Member], set[str]]] = []
    system = part.get("system")
    if system:
        pieces.append(_from_system(system, part, code_systems.get(system)))
    for url in part.get("valueSet") or []:
        expansion = resolve(url)
        pieces.append((expansion.members, set(expansion.open_systems)))
    if not pieces:
        return {}, set()
    members, open_systems = pieces[0]
    for other, other_open in pieces[1:]:
        kept = {k: m for k, m in members.items() if k in other or k[0] in other_open}
        kept.update({k: m for k, m in other.items() if k[0] in open_systems and k not in kept})
        members, open_systems = kept, open_systems & other_open
    return members, open_systems


def _from_system(system: str, part: dict, code_system: CodeSystem | None) -> tuple[dict[Key, Member], set[str]]:
    version = part.get("version") or (code_system.version if code_system else None)
    if part.get("concept"):
        members = {}
        for entry in part["concept"]:
            listed = concept_from(entry)
            known = code_system.find(listed.code) if code_system else None
            members[(system, listed.code)] = Member(system, version, _merge(known, listed))
        return members, set()
    if code_system is None:
        return {}, {system}
    members = {(system, c.code): Member(system, version, c) for c in code_system.concepts.values()}
    return members, set() if code_system.complete else {system}


def _merge(known: Concept | None, listed: Concept) -> Concept:
    """A value set may give its own display and designations; the code system fills the rest."""
    if known is None:
        return listed
    extra = tuple(d for d in listed.designations if d not in known.designations)
    return Concept(listed.code, listed.display or known.display, known.designations + extra, known.definition)


def _check_display(member: Member, display: str | None) -> CodeValidation:
    concept = member.concept
    if display is None or display.strip() in concept.displays():
        return CodeValidation(True, None, concept.display)
    expected = " or ".join(repr(name) for name in concept.displays())
    return CodeValidation(
        False, f"The display {display!r} does not match {member.system}#{concept.code}: expected {expected}",
        concept.display)


def _contains(member: Member, display_language: str | None, include_designations: bool) -> dict:
    concept = member.concept
    entry: dict = {"system": member.system}
    if member.version:
        entry["version"] = member.version
    entry["code"] = concept.code
    display = concept.display_in(display_language)
    if display:
        entry["display"] = display
    if include_designations and concept.designations:
        entry["designation"] = [d.to_fhir() for d in concept.designations]
    return entry


__all__ = ["CodeValidation", "Expansion", "Member", "expand"]
