"""Code systems as the terminology service holds them: concepts by code, with their displays.

A concept's ``display`` is English; Chinese names are ``designation`` entries with
``language`` ``zh-CN``. A code system whose ``content`` is ``fragment`` (our LOINC and ICD-10
subsets) answers for the codes it lists and says so for the others.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Designation:
    language: str | None
    value: str
    use: dict | None = None  # a Coding

    def to_fhir(self) -> dict:
        out: dict = {}
        if self.language:
            out["language"] = self.language
        if self.use:
            out["use"] = self.use
        out["value"] = self.value
        return out


@dataclass(frozen=True)
class Concept:
    code: str
    display: str | None
    designations: tuple[Designation, ...] = ()
    definition: str | None = None

    def display_in(self, language: str | None) -> str | None:
        """The display in ``language`` (e.g. ``zh-CN``, or ``zh`` for any Chinese), else the default one."""
        if language:
            wanted = language.lower()
            for designation in self.designations:
                have = (designation.language or "").lower()
                if have == wanted or have.startswith(wanted + "-"):
                    return designation.value
        return self.display

    def displays(self) -> list[str]:
        """Every name the concept goes by: the display, then each designation."""
        names = [self.display] if self.display else []
        return names + [d.value for d in self.designations if d.value not in names]

    def matches(self, words: list[str]) -> bool:
        """True when each (case-folded) word occurs in the code or in one of the names."""
        texts = [self.code.casefold(), *(name.casefold() for name in self.displays())]
        return all(any(word in text for text in texts) for word in words)


@dataclass(frozen=True)
class CodeSystem:
    url: str
    version: str | None
    name: str | None
    content: str  # complete, fragment, example, not-present, supplement
    concepts: dict[str, Concept]
    case_sensitive: bool = True

    @property
    def complete(self) -> bool:
        return self.content == "complete"

    def find(self, code: str) -> Concept | None:
        if self.case_sensitive:
            return self.concepts.get(code)
        folded = code.casefold()
        return next((c for key, c in self.concepts.items() if key.casefold() == folded), None)

    @classmethod
    def from_resource(cls, resource: dict) -> CodeSystem:
        concepts: dict[str, Concept] = {}
        _collect(resource.get("concept") or [], concepts)
        return cls(
            url=resource["url"], version=resource.get("version"), name=resource.get("name") or resource.get("title"),
            content=resource.get("content", "complete"), concepts=concepts,
            case_sensitive=resource.get("caseSensitive", True),
        )


def concept_from(entry: dict) -> Concept:
    """A Concept from a CodeSystem.concept or a ValueSet.compose.include.concept entry."""
    designations = tuple(
        Designation(d.get("language"), d["value"], d.get("use"))
        for d in entry.get("designation") or [] if d.get("value")
    )
    return Concept(entry["code"], entry.get("display"), designations, entry.get("definition"))


def _collect(entries: list[dict], into: dict[str, Concept]) -> None:
    """Flatten a concept hierarchy (``concept.concept``) into one dictionary by code."""
    for entry in entries:
        into[entry["code"]] = concept_from(entry)
        _collect(entry.get("concept") or [], into)


__all__ = ["CodeSystem", "Concept", "Designation", "concept_from"]
