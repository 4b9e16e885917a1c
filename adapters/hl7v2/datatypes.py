"""HL7 v2 datatype maps (v2-to-FHIR IG ``Datatype X[Y]`` sheets), named as the segment maps name them.

Each map takes ``(segment, field, context, vocabulary)`` and returns the FHIR value for the
element, a list for a repeating element, or None when the field is empty or cannot be read
(after adding a Problem to the context). ``DATATYPE_MAPS`` is the registry the segment maps
(``mappings/hl7v2/segments/*.csv``, column ``datatype_map``) look names up in; the README there
lists each map with the components it reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from adapters.hl7v2.context import MappingContext
from adapters.hl7v2.parsing import Segment

__all__ = ["DATATYPE_MAPS", "parse_time", "to_datetime", "to_instant", "codeable_concept", "coding_system",
           "date_time_value", "identifier_from_cx", "xcn_reference"]

DatatypeMap = Callable[[Segment, int, MappingContext, str], object]
DATATYPE_MAPS: dict[str, DatatypeMap] = {}

_HL7_TS = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?\s*(?:([+-])(\d{2})(\d{2}))?$")


def datatype_map(name: str):
    def register(function: DatatypeMap) -> DatatypeMap:
        DATATYPE_MAPS[name] = function
        return function
    return register


# ---- date and time ------------------------------------------------------------------------
def parse_time(text: str, context: MappingContext) -> tuple[datetime, int, str | None] | None:
    """``(moment, precision, offset)`` of an HL7 TS/DT or a date format from date-formats.csv.

    ``precision`` counts the parts given: 1 year, 2 month, 3 day, 4 hour, 5 minute, 6 second.
    """
    text = text.strip()
    if not text:
        return None
    m = _HL7_TS.match(text)
    if m:
        parts = [int(p) if p else None for p in m.groups()[:6]]
        precision = sum(1 for p in parts if p is not None)
        try:
            moment = datetime(parts[0], parts[1] or 1, parts[2] or 1, parts[3] or 0, parts[4] or 0, parts[5] or 0)
        except ValueError:
            return None
        offset = f"{m.group(8)}{m.group(9)}:{m.group(10)}" if m.group(8) else None
        return moment, precision, offset
    for pattern in context.tables.date_patterns(context.sender):
        try:
            moment = datetime.strptime(text, pattern)
        except ValueError:
            continue
        precision = 6 if "%S" in pattern else 5 if "%M" in pattern else 4 if "%H" in pattern else 3
        return moment, precision, None
    return None


def to_datetime(text: str, context: MappingContext) -> str | None:
    """FHIR dateTime: to the day when no time was sent, else to the second with an offset."""
    parsed = parse_time(text, context)
    if parsed is None:
        return None
    moment, precision, offset = parsed
    if precision <= 1:
        return f"{moment.year:04d}"
    if precision == 2:
        return f"{moment.year:04d}-{moment.month:02d}"
    if precision == 3:
        return moment.date().isoformat()
    return moment.isoformat(timespec="seconds") + (offset or context.setting("timezone") or "+08:00")


def to_instant(text: str, context: MappingContext) -> str | None:
    """FHIR instant (to the second, with an offset); a date alone is taken as its midnight."""
    parsed = parse_time(text, context)
    if parsed is None:
        return None
    moment, _, offset = parsed
    return moment.isoformat(timespec="seconds") + (offset or context.setting("timezone") or "+08:00")


def to_date(text: str, context: MappingContext) -> str | None:
    parsed = parse_time(text, context)
    if parsed is None:
        return None
    moment, precision, _ = parsed
    return (f"{moment.year:04d}" if precision == 1 else f"{moment.year:04d}-{moment.month:02d}"
            if precision == 2 else moment.date().isoformat())


def _timed(convert: Callable[[str, MappingContext], str | None], kind: str) -> DatatypeMap:
    def mapped(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> str | None:
        text = segment.get(field)
        if not text:
            return None
        value = convert(text, context)
        if value is None:
            context.warn(segment, field, "102", f"{segment.id}-{field} {text!r} is not a {kind} "
                         "(HL7 TS or a format of date-formats.csv); left out")
        return value
    return mapped


DATATYPE_MAPS["TS[dateTime]"] = _timed(to_datetime, "date/time")
DATATYPE_MAPS["DTM[dateTime]"] = DATATYPE_MAPS["TS[dateTime]"]
DATATYPE_MAPS["TS[instant]"] = _timed(to_instant, "date/time")
DATATYPE_MAPS["DT[date]"] = _timed(to_date, "date")
DATATYPE_MAPS["TS[date]"] = DATATYPE_MAPS["DT[date]"]


def date_time_value(segment: Segment, field: int, context: MappingContext) -> str | None:
    return DATATYPE_MAPS["TS[dateTime]"](segment, field, context, "")  # type: ignore[return-value]


# ---- strings and codes --------------------------------------------------------------------
@datatype_map("ST[string]")
def string(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> str | None:
    return segment.get(field).strip() or None


@datatype_map("FT[string]")
def formatted_text(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> str | None:
    texts = ["^".join(c[0] for c in rep if c) for rep in segment.repetitions(field)]
    return "\n".join(t.strip("^") for t in texts).strip() or None


@datatype_map("FT[Annotation]")
def annotation(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> list[dict] | None:
    text = formatted_text(segment, field, context, vocabulary)
    return [{"text": text}] if text else None


@datatype_map("ID[code]")
def code(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> str | None:
    """A coded value through ``vocabulary`` (``table.column``); an unknown code is a 103 warning."""
    value = segment.get(field).strip()
    if not value:
        return None
    table, _, column = vocabulary.partition(".")
    row = context.lookup(table, value)
    if row is None or not row.get(column):
        context.warn(segment, field, "103", f"{segment.id}-{field} {value!r} is not in {table}.csv; left out")
        return None
    return row[column]


DATATYPE_MAPS["IS[code]"] = code


def coding_system(name: str, context: MappingContext, local_default: str | None = None) -> str | None:
    """The FHIR system for a v2 coding-system name (coding-systems.csv), else the sender's local one."""
    row = context.lookup("coding-systems", name.strip()) if name else None
    if row:
        return row["system"]
    return local_default


def codeable_concept(segment: Segment, field: int, context: MappingContext, repetition: int = 1,
                     local_system: str | None = None) -> dict | None:
    """CWE/CE: codings from the triplets 1-3 and 4-6, text from CWE-9 else the first text."""
    codings = []
    for first in (1, 4):
        code_value = segment.get(field, first, repetition=repetition).strip()
        display = segment.get(field, first + 1, repetition=repetition).strip()
        if code_value:
            system = coding_system(segment.get(field, first + 2, repetition=repetition), context,
                                   local_system or context.system_for("code"))
            coding = {"system": system, "code": code_value}
            if display:
                coding["display"] = display
            codings.append(coding)
    text = segment.get(field, 9, repetition=repetition).strip() or segment.get(field, 2, repetition=repetition).strip()
    if not codings and not text:
        text = segment.get(field, 1, repetition=repetition).strip()
    if not codings and not text:
        return None
    concept: dict = {}
    if codings:
        concept["coding"] = codings
    if text:
        concept["text"] = text
    return concept


def _every_repetition(read_one, segment: Segment, field: int, context: MappingContext) -> list[dict] | None:
    """``read_one(segment, field, context, repetition)`` of each repetition of the field (1-based)."""
    repetitions = len(segment.fields[field]) if field < len(segment.fields) else 0
    values = [read_one(segment, field, context, n + 1) for n in range(repetitions)]
    return [v for v in values if v] or None


@datatype_map("CWE[CodeableConcept]")
def cwe(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> list[dict] | None:
    return _every_repetition(codeable_concept, segment, field, context)


DATATYPE_MAPS["CE[CodeableConcept]"] = cwe


# ---- people, places, contacts ---------------------------------------------------------------
@datatype_map("XPN[HumanName]")
def human_names(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> list[dict] | None:
    """XPN: family XPN-1, given XPN-2 (and XPN-3); text is family+given, Chinese order, no space."""
    names = []
    for rep in range(1, len(segment.fields[field]) + 1 if field < len(segment.fields) else 1):
        family = segment.get(field, 1, repetition=rep).strip()
        given = [g for g in (segment.get(field, 2, repetition=rep).strip(),
                             segment.get(field, 3, repetition=rep).strip()) if g]
        if not family and not given:
            continue
        name: dict = {"use": "official" if rep == 1 else "usual", "text": family + "".join(given)}
        if family:
            name["family"] = family
        if given:
            name["given"] = given
        names.append(name)
    return names or None


@datatype_map("XAD[Address]")
def addresses(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> list[dict] | None:
    """XAD: line 1-2, city 3, state 4, postalCode 5, country 6, district 9; text in Chinese order."""
    result = []
    for rep in range(1, len(segment.fields[field]) + 1 if field < len(segment.fields) else 1):
        part = {n: segment.get(field, n, repetition=rep).strip() for n in (1, 2, 3, 4, 5, 6, 9)}
        if not any(part.values()):
            continue
        address: dict = {"use": "home"}
        lines = [p for p in (part[1], part[2]) if p]
        if lines:
            address["line"] = lines
        for n, key in ((3, "city"), (9, "district"), (4, "state"), (5, "postalCode"), (6, "country")):
            if part[n]:
                address[key] = part[n]
        address["text"] = "".join(p for p in (part[4], part[3], part[9], *lines) if p)
        result.append(address)
    return result or None


_TELECOM_USE = {"PRN": "home", "WPN": "work", "ORN": "home", "VHN": "home", "ASN": "work", "EMR": "home",
                "NET": "home", "BPN": "work", "PRS": "mobile"}


@datatype_map("XTN[ContactPoint]")
def contact_points(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> list[dict] | None:
    result = []
    for rep in range(1, len(segment.fields[field]) + 1 if field < len(segment.fields) else 1):
        email = segment.get(field, 4, repetition=rep).strip()
        number = (segment.get(field, 1, repetition=rep).strip() or segment.get(field, 12, repetition=rep).strip()
                  or segment.get(field, 7, repetition=rep).strip())
        use = segment.get(field, 2, repetition=rep).strip()
        equipment = segment.get(field, 3, repetition=rep).strip()
        if email or use == "NET":
            result.append({"system": "email", "value": email or number})
        elif number:
            point = {"system": "phone", "value": number}
            if equipment == "CP" or use == "PRS":
                point["use"] = "mobile"
            elif use in _TELECOM_USE:
                point["use"] = _TELECOM_USE[use]
            result.append(point)
    return result or None


def identifier_from_cx(segment: Segment, field: int, repetition: int, context: MappingContext,
                       kind: str) -> dict | None:
    """CX: value CX-1; system from the assigning authority (CX-4: an OID in CX-4.2 with CX-4.3 ISO,
    else its namespace CX-4.1), else minted for the sending facility."""
    value = segment.get(field, 1, repetition=repetition).strip()
    if not value:
        return None
    namespace = segment.get(field, 4, 1, repetition).strip()
    universal = segment.get(field, 4, 2, repetition).strip()
    universal_type = segment.get(field, 4, 3, repetition).strip().upper()
    if universal and universal_type == "ISO":
        system = f"urn:oid:{universal}"
    else:
        system = context.system_for(kind, namespace or None)
    return {"system": system, "value": value}


def xcn_reference(segment: Segment, field: int, context: MappingContext, repetition: int = 1) -> dict | None:
    """XCN as a logical reference to a Practitioner: identifier XCN-1, display XCN-2 + XCN-3."""
    number = segment.get(field, 1, repetition=repetition).strip()
    name = segment.get(field, 2, repetition=repetition).strip() + segment.get(field, 3, repetition=repetition).strip()
    if not number and not name:
        return None
    reference: dict = {"type": "Practitioner"}
    if number:
        namespace = segment.get(field, 9, 1, repetition).strip()
        reference["identifier"] = {"system": context.system_for("practitioner", namespace or None), "value": number}
    if name:
        reference["display"] = name
    return reference


@datatype_map("XCN[Reference]")
def practitioners(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> list[dict] | None:
    return _every_repetition(xcn_reference, segment, field, context)


# ---- identifiers of orders and specimens --------------------------------------------------
def entity_identifier(segment: Segment, field: int, context: MappingContext, kind: str,
                      inside: int | None = None, repetition: int = 1) -> dict | None:
    """EI: value EI-1; system from EI-3 (an ISO OID, with EI-4) else the namespace EI-2, else
    minted for the sending facility. ``inside`` reads an EI held in one component (EIP-1, EIP-2)."""
    if inside is None:
        value, namespace, universal, universal_type = (
            segment.get(field, n, repetition=repetition).strip() for n in (1, 2, 3, 4))
    else:
        value, namespace, universal, universal_type = (
            segment.get(field, inside, n, repetition).strip() for n in (1, 2, 3, 4))
    if not value:
        return None
    if universal and universal_type.upper() == "ISO":
        system = f"urn:oid:{universal}"
    else:
        system = context.system_for(kind, namespace or None)
    return {"system": system, "value": value}


def _typed_order_number(type_code: str, kind: str) -> DatatypeMap:
    def mapped(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> dict | None:
        identifier = entity_identifier(segment, field, context, kind)
        if identifier is None:
            return None
        return {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": type_code}]},
                **identifier}
    return mapped


DATATYPE_MAPS["EI[Identifier-PLAC]"] = _typed_order_number("PLAC", "placer-order-number")
DATATYPE_MAPS["EI[Identifier-FILL]"] = _typed_order_number("FILL", "filler-order-number")


@datatype_map("EIP[Identifier]")
def specimen_identifier(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> dict | None:
    """EIP: the filler-assigned id (EIP-2) if sent, else the placer's (EIP-1)."""
    return (entity_identifier(segment, field, context, "specimen", inside=2)
            or entity_identifier(segment, field, context, "specimen", inside=1))


@datatype_map("CWE[CodeableConcept-first]")
def first_concept(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> dict | None:
    return codeable_concept(segment, field, context)


@datatype_map("XCN[Reference-first]")
def first_practitioner(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> dict | None:
    return xcn_reference(segment, field, context)


@datatype_map("NDL[Reference]")
def interpreter(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> list[dict] | None:
    """NDL: CNN in component 1 (ID & family & given as sub-components)."""
    number, family, given = (segment.get(field, 1, n).strip() for n in (1, 2, 3))
    if not number and not family:
        return None
    reference: dict = {"type": "Practitioner"}
    if number:
        reference["identifier"] = {"system": context.system_for("practitioner"), "value": number}
    if family or given:
        reference["display"] = family + given
    return [reference]


@datatype_map("SPS[CodeableConcept]")
def specimen_source(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> dict | None:
    """SPS-1 (a CWE held in sub-components: code & text & coding system), HL7 table 0070 by default."""
    code_value, text, system_name = (segment.get(field, 1, n).strip() for n in (1, 2, 3))
    if not code_value and not text:
        return None
    concept: dict = {}
    if code_value:
        system = coding_system(system_name, context) or "http://terminology.hl7.org/CodeSystem/v2-0070"
        concept["coding"] = [{"system": system, "code": code_value, **({"display": text} if text else {})}]
    if text:
        concept["text"] = text
    return concept
