"""The document body, written and read by the entry tables (``mappings/cda/sections/*.csv``).

``write_body(root, entries, values)`` adds ``component/structuredBody`` with one section per
section code (in table order), a readable narrative (``section/text``, Chinese) and one
``observation`` entry per (section, entry code, mood) that has a value: ``value`` typed by
``xsi:type`` (PQ with the table's unit, CD with its code system and Chinese display, ST, TS)
and ``effectiveTime`` for the rows of type EFF; a list of codes (CD*) gives one observation
per code; medications (SBADM) are ``substanceAdministration`` entries.

``read_body(root, entries)`` finds each value by ``mapping.entry_xpath`` and returns
``{field: value}``: PQ -> int or float, CD -> the code (checked against the code table), CD*
-> list of codes, ST -> str, TS/EFF -> date, SBADM -> list of (name, usage). A number in the
wrong unit, an unknown code or an unreadable date is a ``CdaDocumentError`` naming the entry.
Blood pressure written the WS/T 500 way (an organizer with SBP and DBP components) is read
too, since the XPath looks for observations anywhere below the section.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from lxml import etree

from adapters.public_health.cda.mapping import EntryMap, entry_xpath, same_unit, value_table
from adapters.public_health.cda.parse import (
    CDA_NS,
    NS,
    XSI_NS,
    CdaDocumentError,
    cda_date,
    format_cda_date,
)

__all__ = ["read_body", "write_body"]

_C = "{" + CDA_NS + "}"
_XSI_TYPE = "{" + XSI_NS + "}type"


def write_body(root: etree._Element, entries: Iterable[EntryMap], values: dict) -> None:
    body = etree.SubElement(etree.SubElement(root, _C + "component"), _C + "structuredBody")
    sections: dict[str, list[EntryMap]] = {}
    for entry in entries:
        sections.setdefault(entry.section_code, []).append(entry)
    for code, rows in sections.items():
        present = [row for row in rows if not _empty(values.get(row.field))]
        if not present:
            continue
        section = etree.SubElement(etree.SubElement(body, _C + "component"), _C + "section")
        etree.SubElement(section, _C + "code", code=code, codeSystem="2.16.840.1.113883.6.1",
                         codeSystemName="LOINC", displayName=rows[0].section_display)
        etree.SubElement(section, _C + "title").text = rows[0].section_display
        _narrative(section, present, values)
        observations: dict[tuple, etree._Element] = {}
        for row in present:
            value = values[row.field]
            if row.value_type == "SBADM":
                for name, usage in value:
                    _medication(section, name, usage)
            elif row.value_type == "CD*":
                for code_value in value:
                    _set_value(_observation(section, row), row, code_value)
            elif row.value_type == "EFF":
                observation = observations.get(row.entry_key)
                if observation is None:
                    observation = observations[row.entry_key] = _observation(section, row)
                etree.SubElement(observation, _C + "effectiveTime", value=format_cda_date(value))
                _order(observation)
            else:
                observation = observations.get(row.entry_key)
                if observation is None:
                    observation = observations[row.entry_key] = _observation(section, row)
                _set_value(observation, row, value)
                _order(observation)


def _empty(value) -> bool:
    return value is None or value == "" or value == [] or value == ()


def _observation(section: etree._Element, row: EntryMap) -> etree._Element:
    entry = etree.SubElement(section, _C + "entry")
    observation = etree.SubElement(entry, _C + "observation", classCode="OBS", moodCode=row.mood)
    etree.SubElement(observation, _C + "code", code=row.entry_code, codeSystem=row.entry_system,
                     displayName=row.entry_display)
    return observation


def _order(observation: etree._Element) -> None:
    """CDA order inside an observation: code, effectiveTime, value."""
    rank = {_C + "code": 0, _C + "effectiveTime": 1, _C + "value": 2}
    children = sorted(observation, key=lambda child: rank.get(child.tag, 3))
    for child in children:
        observation.append(child)


def _set_value(observation: etree._Element, row: EntryMap, value) -> None:
    element = etree.SubElement(observation, _C + "value")
    if row.value_type == "PQ":
        element.set(_XSI_TYPE, "PQ")
        element.set("value", _number_text(value))
        if row.unit:
            element.set("unit", row.unit)
    elif row.value_type in ("CD", "CD*"):
        table = value_table(row.value_table)
        element.set(_XSI_TYPE, "CD")
        element.set("code", str(value))
        element.set("codeSystem", table.oid)
        display = table.displays.get(str(value))
        if display:
            element.set("displayName", display)
    elif row.value_type == "TS":
        element.set(_XSI_TYPE, "TS")
        element.set("value", format_cda_date(value))
    else:  # ST
        element.set(_XSI_TYPE, "ST")
        element.text = str(value)


def _number_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def _medication(section: etree._Element, name: str, usage: str | None) -> None:
    entry = etree.SubElement(section, _C + "entry")
    administration = etree.SubElement(entry, _C + "substanceAdministration", classCode="SBADM", moodCode="EVN")
    if usage:
        etree.SubElement(administration, _C + "text").text = usage
    product = etree.SubElement(etree.SubElement(administration, _C + "consumable"), _C + "manufacturedProduct")
    etree.SubElement(etree.SubElement(product, _C + "manufacturedLabeledDrug"), _C + "name").text = name


def _narrative(section: etree._Element, rows: list[EntryMap], values: dict) -> None:
    text = etree.SubElement(section, _C + "text")
    lines = []
    for row in rows:
        value = values[row.field]
        if row.value_type == "SBADM":
            lines += [f"{row.entry_display}：{name}" + (f"，{usage}" if usage else "") for name, usage in value]
        elif row.value_type in ("CD", "CD*"):
            displays = value_table(row.value_table).displays
            codes = value if row.value_type == "CD*" else [value]
            lines.append(f"{row.entry_display}：" + "、".join(displays.get(str(c), str(c)) for c in codes))
        elif row.value_type in ("TS", "EFF"):
            lines.append(f"{row.entry_display}{'日期' if row.value_type == 'EFF' else ''}：{value.isoformat()}")
        else:
            unit = f" {row.unit}" if row.value_type == "PQ" and row.unit else ""
            lines.append(f"{row.entry_display}：{_number_text(value) if row.value_type == 'PQ' else value}{unit}")
    for line in lines:
        etree.SubElement(text, _C + "paragraph").text = line


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_body(root: etree._Element, entries: Iterable[EntryMap]) -> dict:
    values: dict = {}
    for row in entries:
        found = root.xpath(entry_xpath(row), namespaces=NS)
        what = f"entry {row.entry_display} ({row.entry_code})"
        if not found:
            continue
        if row.value_type == "SBADM":
            values[row.field] = [drug for drug in map(_read_medication, found) if drug[0]]
        elif row.value_type == "CD*":
            codes = [_read_code(e, row, what) for e in found]
            values[row.field] = [c for c in dict.fromkeys(codes) if c]
        elif row.value_type == "EFF":
            values[row.field] = cda_date(found[0], what)
        else:
            value = _read_value(found[0], row, what)
            if value is not None:
                values[row.field] = value
    return values


def _read_value(element: etree._Element, row: EntryMap, what: str):
    if element.get("nullFlavor"):
        return None
    if row.value_type == "PQ":
        return _read_quantity(element, row, what)
    if row.value_type == "CD":
        return _read_code(element, row, what)
    if row.value_type == "TS":
        return cda_date(element.get("value"), what)
    text = "".join(element.itertext()).strip()
    return text or None


def _read_quantity(element: etree._Element, row: EntryMap, what: str) -> int | float | None:
    raw = (element.get("value") or "").strip()
    if not raw:
        return None
    unit = (element.get("unit") or "").strip()
    if row.unit and unit and not same_unit(unit, row.unit):
        raise CdaDocumentError(f"{what}: unit {unit!r}, expected {row.unit!r}")
    try:
        number = float(raw)
    except ValueError:
        raise CdaDocumentError(f"{what}: {raw!r} is not a number") from None
    if not math.isfinite(number):
        raise CdaDocumentError(f"{what}: {raw!r} is not a number")
    return int(number) if number.is_integer() and "." not in raw else number


def _read_code(element: etree._Element, row: EntryMap, what: str) -> str | None:
    if element.get("nullFlavor"):
        return None
    code = (element.get("code") or "").strip()
    if not code:
        return None
    table = value_table(row.value_table)
    system = element.get("codeSystem")
    if system and system != table.oid:
        raise CdaDocumentError(f"{what}: code system {system}, expected {table.oid}")
    if code not in table.displays:
        choices = "; ".join(f"{c} {d}" for c, d in table.displays.items())
        raise CdaDocumentError(f"{what}: {code!r} is not one of its codes ({choices})")
    return code


def _read_medication(element: etree._Element) -> tuple[str | None, str | None]:
    names = element.xpath("cda:consumable/cda:manufacturedProduct/cda:manufacturedLabeledDrug/cda:name",
                          namespaces=NS)
    name = "".join(names[0].itertext()).strip() if names else None
    texts = element.xpath("cda:text", namespaces=NS)
    usage = "".join(texts[0].itertext()).strip() if texts else None
    return name or None, usage or None

