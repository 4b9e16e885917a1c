"""Quantity index: the value as sent, plus its canonical UCUM form for cross-unit search.

A row whose unit has a canonical form is searched through ``(sp, canonical_code,
canonical_value)`` only; ``(sp, code, value)`` is a partial index of the other rows (local
units), so that a quantity in a UCUM unit costs one index insert, not two.

The canonical form lets ``value-quantity=gt7|http://unitsofmeasure.org|mmol/L`` find a glucose
sent as 140 mg/dL: a concentration of an analyte with a known molar mass is indexed both as
mass and as substance concentration (see ``fhir_server.search.units``). ``analyte`` is the LOINC
code of the observation the quantity belongs to, when there is one.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import and_, or_

from fhir_server.errors import InvalidRequest
from fhir_server.search.parse import split_escaped, unescape
from fhir_server.search.units import canonical_conversions, canonicalize, to_ucum
from fhir_server.storage.index.number import number_condition, parse_number
from fhir_server.storage.index.text import clip

KIND = "quantity"
UCUM = "http://unitsofmeasure.org"


def ucum_code(quantity: dict) -> str | None:
    """The UCUM code of a Quantity: its code when the system is UCUM, else its unit text if that is UCUM."""
    if quantity.get("system") == UCUM and quantity.get("code"):
        return quantity["code"]
    if not quantity.get("system") and (quantity.get("code") or quantity.get("unit")):
        return to_ucum(quantity.get("code") or quantity.get("unit"))
    return None


def extract(node, analyte: str | None = None) -> list[dict]:
    """One row per canonical form: a concentration of an analyte with a known molar mass is
    indexed both as mass and as substance concentration, so either unit finds it."""
    if not isinstance(node, dict):
        return []
    value = node.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return []
    value = float(value)
    ucum = ucum_code(node)
    forms = canonical_conversions(ucum, analyte) if ucum else ()
    # strings cut to their column widths (PostgreSQL refuses longer values)
    system, code, unit = _clip(node.get("system"), 256), _clip(node.get("code"), 64), _clip(node.get("unit"), 64)
    if not forms:
        return [{"system": system, "code": code, "unit": unit, "value": value,
                 "canonical_code": None, "canonical_value": None}]
    return [{"system": system, "code": code, "unit": unit, "value": value,
             "canonical_code": _clip(form.code, 64), "canonical_value": form.apply(value)}
            for form in forms]


def _clip(value, limit: int) -> str | None:
    return clip(value, limit) or None if isinstance(value, str) else None


def condition(t, value, modifier):
    """``[prefix]number[|system|code]``; UCUM units are compared in canonical form."""
    parts = [unescape(p) for p in split_escaped(value.raw, "|")]
    if len(parts) not in (1, 3):
        raise InvalidRequest(f"Quantity value {value.raw!r} must be number or number|system|code")
    number = parse_number(parts[0], "quantity")
    system, code = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
    # the unit read as the index reads a stored one (ucum_code): "mmHg" without a system is mm[Hg]
    ucum_unit = (code if system == UCUM else to_ucum(code)) if code and system in ("", UCUM) else None
    canonical_unit = canonicalize(1.0, ucum_unit) if ucum_unit else None
    if canonical_unit is not None:
        def to_canonical(x: float) -> float:
            return canonicalize(x, ucum_unit).value

        return and_(t.c.canonical_code == clip(canonical_unit.code, 64),
                    number_condition(t.c.canonical_value, value, number, convert=to_canonical))
    condition = number_condition(t.c.value, value, number)
    if code:
        unit = clip(code, 64)  # as indexed
        unit_match = or_(t.c.code == unit, and_(t.c.code.is_(None), t.c.unit == unit))
        # a unit without a canonical form here had none when indexed either: the rows are those
        # the partial index on (sp, code, value) holds
        condition = and_(condition, unit_match, t.c.canonical_code.is_(None))
    if system:
        condition = and_(condition, t.c.system == clip(system))
    return condition

