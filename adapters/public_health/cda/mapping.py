"""The CDA maps, read once from ``mappings/cda/`` (data a domain expert reviews and corrects).

* ``documents.csv``: the document kinds: template id, document code, title, standard.
* ``header.csv``: header field -> XPath (relative to ``ClinicalDocument``, prefix ``cda``).
* ``sections/<kind>.csv``: record field -> section code, entry code (a national data element
  ``DE..`` where known, else a placeholder in the ``local-entry`` code system), mood (``EVN``
  a fact, ``GOL`` a target), value type and unit, and the code table of a coded value.
* ``code-systems.csv``: code-system names used by the tables -> OIDs (and FHIR system URLs).
* ``unit-aliases.csv``: other spellings of a table's unit that a document may use (UCUM
  ``mm[Hg]`` for ``mmHg``, ``次/分`` for ``次/min`` ...); documents are written with the table's.
* ``value-codes.csv``: displays of the referral's coded values (the follow-up forms' coded
  answers come from ``mappings/public_health/codes.csv``, shared with the CSV import).

Where a body value is found (``entry_xpath``)::

    cda:component/cda:structuredBody/cda:component/cda:section[cda:code/@code=SECTION]
        //cda:observation[@moodCode=MOOD][cda:code[@code=ENTRY][@codeSystem=ENTRY_OID]]
        /cda:value                   (PQ, CD, ST, TS: one; CD*: every matching observation)
        /cda:effectiveTime/@value    (EFF)

and medications (``SBADM``) are ``cda:substanceAdministration`` entries of their section.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from adapters.public_health.form_codes import code_tables

__all__ = ["MAPPINGS_DIR", "DocumentKind", "EntryMap", "HeaderMap", "ValueTable", "code_system_oid",
           "document_kinds", "entry_maps", "entry_xpath", "header_maps", "identifier_root", "identifier_system",
           "same_unit", "value_table"]

MAPPINGS_DIR = Path(__file__).resolve().parents[3] / "mappings" / "cda"

VALUE_TYPES = frozenset({"PQ", "CD", "CD*", "ST", "TS", "EFF", "SBADM"})


@dataclass(frozen=True)
class DocumentKind:
    kind: str  # hypertension-follow-up | diabetes-follow-up | referral
    template_id: str
    document_code: str
    document_code_system: str
    title: str
    standard: str
    record: str  # "follow-up:hypertension", "follow-up:diabetes", "referral"


@dataclass(frozen=True)
class HeaderMap:
    field: str
    xpath: str


@dataclass(frozen=True)
class EntryMap:
    field: str
    section_code: str
    section_display: str
    entry_code: str
    entry_system: str  # OID
    entry_display: str
    mood: str  # EVN | GOL
    value_type: str
    unit: str
    value_table: str

    @property
    def entry_key(self) -> tuple[str, str, str, str]:
        """Rows with the same key are one observation (a value and its effectiveTime)."""
        return (self.section_code, self.entry_code, self.entry_system, self.mood)


@dataclass(frozen=True)
class ValueTable:
    name: str
    oid: str
    displays: dict[str, str] = field(default_factory=dict)  # code -> display (Chinese)


def _rows(name: str) -> list[dict[str, str]]:
    with (MAPPINGS_DIR / name).open(encoding="utf-8", newline="") as handle:
        return [{k: (v or "").strip() for k, v in row.items()} for row in csv.DictReader(handle)]


@cache
def _code_systems() -> tuple[dict[str, str], dict[str, str]]:
    """(name -> OID, FHIR system URL -> OID)."""
    by_name, by_url = {}, {}
    for row in _rows("code-systems.csv"):
        by_name[row["name"]] = row["cda_oid"]
        if row["fhir_system"]:
            by_url[row["fhir_system"]] = row["cda_oid"]
    return by_name, by_url


def identifier_root(system: str | None) -> str | None:
    """The CDA ``II/@root`` of a FHIR identifier system: the OID of ``urn:oid:``, else the OID
    ``code-systems.csv`` gives the system URL, else None (no root for it)."""
    if not system:
        return None
    if system.startswith("urn:oid:"):
        return system[len("urn:oid:"):]
    return _code_systems()[1].get(system)


def identifier_system(root: str) -> str:
    """The FHIR identifier system of a CDA ``II/@root`` (the inverse of ``identifier_root``)."""
    for url, oid in _code_systems()[1].items():
        if oid == root and not url.startswith("urn:oid:"):
            return url
    return f"urn:oid:{root}"


def code_system_oid(name: str) -> str:
    try:
        return _code_systems()[0][name]
    except KeyError:
        raise KeyError(f"mappings/cda/code-systems.csv has no code system {name!r}") from None


@cache
def document_kinds() -> dict[str, DocumentKind]:
    return {row["kind"]: DocumentKind(
        row["kind"], row["template_id"], row["document_code"], row["document_code_system"],
        row["title"], row["standard"], row["record"]) for row in _rows("documents.csv")}


@cache
def header_maps() -> dict[str, HeaderMap]:
    return {row["field"]: HeaderMap(row["field"], row["xpath"]) for row in _rows("header.csv")}


@cache
def entry_maps(kind: str) -> tuple[EntryMap, ...]:
    maps = []
    for number, row in enumerate(_rows(f"sections/{kind}.csv"), start=2):
        if row["value_type"] not in VALUE_TYPES:
            raise ValueError(f"mappings/cda/sections/{kind}.csv line {number}: unknown value type "
                             f"{row['value_type']!r}")
        maps.append(EntryMap(
            row["field"], row["section_code"], row["section_display"], row["entry_code"],
            code_system_oid(row["entry_system"]) if row["entry_system"] else "",
            row["entry_display"], row["mood"] or "EVN", row["value_type"], row["unit"],
            row["value_table"]))
    return tuple(maps)


@cache
def value_table(name: str) -> ValueTable:
    """The coded values of ``name``: a follow-up form table (mappings/public_health/codes.csv)
    or a referral table (mappings/cda/value-codes.csv), with the OID of its code system."""
    local = [row for row in _rows("value-codes.csv") if row["table"] == name]
    if local:
        return ValueTable(name, code_system_oid(local[0]["code_system"]),
                          {row["code"]: row["display"] for row in local})
    tables = code_tables()
    if name not in tables:
        raise KeyError(f"no code table {name!r} in mappings/public_health/codes.csv or "
                       "mappings/cda/value-codes.csv")
    table = tables[name]
    oid = _code_systems()[1].get(table.system)
    if oid is None:
        raise KeyError(f"mappings/cda/code-systems.csv has no OID for {table.system}")
    return ValueTable(name, oid, dict(table.words))


@cache
def _unit_aliases() -> dict[str, str]:
    return {row["alias"]: row["unit"] for row in _rows("unit-aliases.csv")}


def same_unit(written: str, expected: str) -> bool:
    """Whether a document's unit is the table's unit or one of its aliases."""
    return written == expected or _unit_aliases().get(written) == expected


def entry_xpath(entry: EntryMap) -> str:
    """The XPath (relative to ClinicalDocument) of the element holding ``entry``'s value."""
    section = ("cda:component/cda:structuredBody/cda:component/cda:section"
               f"[cda:code/@code='{entry.section_code}']")
    if entry.value_type == "SBADM":
        return f"{section}/cda:entry/cda:substanceAdministration"
    observation = (f"{section}//cda:observation[@moodCode='{entry.mood}']"
                   f"[cda:code[@code='{entry.entry_code}'][@codeSystem='{entry.entry_system}']]")
    if entry.value_type == "EFF":
        return f"{observation}/cda:effectiveTime/@value"
    return f"{observation}/cda:value"
