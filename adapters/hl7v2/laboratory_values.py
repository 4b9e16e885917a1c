"""The datatype maps of a laboratory result (OBX), registered beside the generic ones.

- ``ObservationValue``: OBX-5 by its type OBX-2 (value-types.csv) with the unit of OBX-6;
- ``ReferenceRange``: OBX-7 ("3.9-6.1", "3.9～6.1", "<5.2", "≥1.0", or text);
- ``AbnormalFlags``: OBX-8 through abnormal-flags.csv to v3 ObservationInterpretation;
- ``ResultStatus``: OBX-11 / OBR-25 through observation-status.csv / report-status.csv;
- ``LabCode``: OBX-3 / OBR-4, local codes translated to LOINC by the terminology service's
  ConceptMaps (the local coding kept beside the LOINC one; no mapping: a warning).
"""

from __future__ import annotations

import re

from adapters.hl7v2.context import MappingContext
from adapters.hl7v2.datatypes import DATATYPE_MAPS, codeable_concept, coding_system, datatype_map, to_datetime
from adapters.hl7v2.parsing import Segment
from fhir_server.search.units import to_ucum

__all__ = ["lab_code", "observation_quantity_unit", "LOINC", "UCUM", "INTERPRETATION"]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_NUMBER = re.compile(r"^\s*(<=|>=|<|>|≤|≥)?\s*([+-]?\d+(?:\.\d+)?)\s*(.*?)\s*$")
_RANGE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(?:-{1,2}|~|～|—|–|至)\s*([+-]?\d+(?:\.\d+)?)\s*(.*?)\s*$")
_COMPARATORS = {"≤": "<=", "≥": ">=", "<": "<", ">": ">", "<=": "<=", ">=": ">="}
_ACCEPTED_EQUIVALENCE = ("equivalent", "equal", "wider", "subsumes", "narrower", "specializes", "relatedto")
_translations: dict[tuple[int, str, str], tuple[str, str | None] | None] = {}


def _number(text: str) -> int | float:
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)


def observation_quantity_unit(segment: Segment, context: MappingContext) -> str:
    """The unit text of OBX-6: OBX-6.1, else (tolerance ``unit_fallback``) OBX-6.2 or OBX-6.5."""
    unit = segment.get(6, 1).strip()
    if not unit and context.flag("unit_fallback"):
        unit = segment.get(6, 2).strip() or segment.get(6, 5).strip()
    return unit


def _quantity(value: int | float, unit: str, comparator: str | None = None) -> dict:
    quantity: dict = {"value": value}
    if comparator:
        quantity["comparator"] = comparator
    if unit:
        quantity["unit"] = unit
        ucum = to_ucum(unit)
        if ucum is not None:
            quantity["system"] = UCUM
            quantity["code"] = ucum
    return quantity


@datatype_map("ObservationValue")
def observation_value(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> dict | None:
    value_type = segment.get(2).strip().upper()
    text = segment.get(field, 1)
    if not segment.valued(field):
        return None
    if not value_type:  # tolerance: the type left out; a number is NM, anything else ST
        value_type = "NM" if _NUMBER.match(text) and not _NUMBER.match(text).group(3) else "ST"
    row = context.lookup("value-types", value_type)
    if row is None:
        context.problem(segment, 2, "102", "E", f"OBX-2 value type {value_type!r} is not supported "
                        "(value-types.csv lists NM, SN, ST, TX, FT, CWE, CE, TS, DT)")
        return None
    kind = row["value"]
    unit = observation_quantity_unit(segment, context)
    if kind == "quantity" or (kind == "string-or-number" and context.flag("numbers_in_st")):
        m = _NUMBER.match(text)
        if m and m.group(3):  # text after the number: a unit in the wrong place, or not a number
            if context.flag("unit_fallback") and not unit and to_ucum(m.group(3)):
                unit = m.group(3)
            else:
                m = None
        if m:
            return {"valueQuantity": _quantity(_number(m.group(2)), unit, _COMPARATORS.get(m.group(1) or ""))}
        if kind == "quantity":
            context.problem(segment, field, "102", "E", f"OBX-5 {text!r} is not a number (OBX-2 is NM)")
            return None
    if kind in ("string-or-number", "string"):
        return {"valueString": segment.component(field, 1)}
    if kind == "structured-numeric":
        return _structured_numeric(segment, field, context, unit)
    if kind == "coded":
        concept = codeable_concept(segment, field, context, local_system=context.system_for("result-code"))
        return {"valueCodeableConcept": concept} if concept else None
    if kind == "text":
        lines = ["^".join(sub for comp in rep for sub in comp).rstrip("^") for rep in segment.fields[field]]
        return {"valueString": "\n".join(lines).strip()}
    if kind == "date-time":
        moment = to_datetime(text, context)
        if moment is None:
            context.problem(segment, field, "102", "E", f"OBX-5 {text!r} is not a date/time")
            return None
        return {"valueDateTime": moment}
    return {"valueString": text}


def _structured_numeric(segment: Segment, field: int, context: MappingContext, unit: str) -> dict | None:
    comparator, first, separator, second = (segment.get(field, n).strip() for n in (1, 2, 3, 4))
    try:
        low = _number(first) if first else None
        high = _number(second) if second else None
    except ValueError:
        low = high = None
        first = "?"
    if first == "?" or (low is None and high is None):
        m = _NUMBER.match(segment.get(field, 1)) if not first else None
        if m:  # tolerance: ">16.7" in one component
            return {"valueQuantity": _quantity(_number(m.group(2)), unit, _COMPARATORS.get(m.group(1) or ""))}
        context.problem(segment, field, "102", "E", "OBX-5 is not a structured numeric value (SN: comparator^num^sep^num)")
        return None
    if separator in ("-", "~", "～") and low is not None and high is not None:
        return {"valueRange": {"low": _quantity(low, unit), "high": _quantity(high, unit)}}
    if separator in (":", "/") and low is not None and high is not None:
        return {"valueRatio": {"numerator": {"value": low}, "denominator": {"value": high}}}
    if comparator in ("", "="):
        return {"valueQuantity": _quantity(low, unit)}
    if comparator in _COMPARATORS:
        return {"valueQuantity": _quantity(low, unit, _COMPARATORS[comparator])}
    context.warn(segment, field, "102", f"OBX-5 comparator {comparator!r} has no FHIR equivalent; kept as text")
    return {"valueString": f"{comparator}{first}"}


@datatype_map("ReferenceRange")
def reference_range(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> list[dict] | None:
    text = segment.component(field, 1).strip()
    if not text:
        return None
    unit = observation_quantity_unit(segment, context)
    simple = {k: v for k, v in _quantity(0, unit).items() if k != "value"}
    m = _RANGE.match(text)
    if m:
        return [{"low": {"value": _number(m.group(1)), **simple}, "high": {"value": _number(m.group(2)), **simple}}]
    m = _NUMBER.match(text)
    if m and m.group(1) and not m.group(3):
        side = "high" if _COMPARATORS[m.group(1)] in ("<", "<=") else "low"
        return [{side: {"value": _number(m.group(2)), **simple}, "text": text}]
    return [{"text": text}]


@datatype_map("AbnormalFlags")
def abnormal_flags(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> list[dict] | None:
    concepts = []
    for rep in segment.repetitions(field):
        flag = rep[0][0].strip() if rep and rep[0] else ""
        if not flag:
            continue
        row = context.lookup("abnormal-flags", flag)
        if row is None:
            context.warn(segment, field, "103", f"OBX-8 abnormal flag {flag!r} is not in abnormal-flags.csv; kept as text")
            concepts.append({"text": flag})
            continue
        concepts.append({"coding": [{"system": INTERPRETATION, "code": row["interpretation"],
                                     "display": row["display"]}], "text": flag})
    return concepts or None


def _status(vocabulary_file: str, default: str) -> object:
    def mapped(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> str:
        value = segment.get(field).strip()
        if not value:
            context.warn(segment, field, "101", f"{segment.id}-{field} (result status) is empty; taken as {default}")
            return default
        row = context.lookup(vocabulary_file, value)
        if row is None:
            context.warn(segment, field, "103",
                         f"{segment.id}-{field} status {value!r} is not in {vocabulary_file}.csv; taken as {default}")
            return default
        return row["status"]
    return mapped


DATATYPE_MAPS["ResultStatus"] = _status("observation-status", "final")  # type: ignore[assignment]
DATATYPE_MAPS["ReportStatus"] = _status("report-status", "final")  # type: ignore[assignment]


def lab_code(segment: Segment, field: int, context: MappingContext) -> tuple[dict | None, bool]:
    """OBX-3 / OBR-4 as a CodeableConcept with LOINC first when known; (concept, has_loinc).

    A code whose coding system (CWE-3 / CWE-6) is not in coding-systems.csv is a local lab
    code of the sender's ``lab_code_system`` and goes through the ConceptMaps; no mapping
    leaves the local coding alone and adds a warning (103) to the context.
    """
    local_system = context.setting("lab_code_system") or context.system_for("lab-code")
    concept = codeable_concept(segment, field, context, local_system=local_system)
    if concept is None:
        return None, False
    codings = concept.get("coding", [])
    if any(c["system"] == LOINC for c in codings):
        codings.sort(key=lambda c: c["system"] != LOINC)
        return concept, True
    terminology = getattr(context.server, "terminology", None)
    for coding in codings:
        if coding["system"] != local_system or terminology is None:
            continue
        mapped = _translate(terminology, coding["system"], coding["code"])
        if mapped:
            codings.insert(0, {"system": LOINC, "code": mapped[0], **({"display": mapped[1]} if mapped[1] else {})})
            return concept, True
    shown = ", ".join(f"{c['code']} ({c.get('display', '')})" for c in codings) or concept.get("text", "")
    context.warn(segment, field, "103", f"{segment.id}-{field} local code {shown} has no LOINC mapping in the "
                 "terminology ConceptMaps; stored with its local coding")
    return concept, False


def _translate(terminology, system: str, code: str) -> tuple[str, str | None] | None:
    key = (id(terminology), system, code)
    if key not in _translations:
        answer = terminology.translate(code, system, target_system=LOINC)
        match = next((m for m in answer.matches if m.code and m.equivalence in _ACCEPTED_EQUIVALENCE), None)
        _translations[key] = (match.code, match.display) if match and answer.result else None
    return _translations[key]


__all__ += ["coding_system"]
