"""Number index: decimals and integers (e.g. RiskAssessment probability, Group quantity)."""

from __future__ import annotations

import re
from decimal import Decimal

from fhir_server.errors import InvalidRequest
from fhir_server.storage.index.ranges import compare

KIND = "number"


def extract(node) -> list[dict]:
    if isinstance(node, bool):
        return []
    if isinstance(node, (int, float, Decimal)):
        return [{"value": float(node)}]
    if isinstance(node, dict) and isinstance(node.get("value"), (int, float, Decimal)):
        return [{"value": float(node["value"])}]
    return []


# A FHIR decimal (leading zeros and '+' tolerated); the exponent is bounded so that the
# precision arithmetic below stays inside Decimal's context (1e99999999999 is not a 500).
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,4})?", re.ASCII)


def parse_number(raw: str, what: str = "number") -> Decimal:
    if not _DECIMAL.fullmatch(raw):
        raise InvalidRequest(f"{raw!r} is not a valid {what}")
    return Decimal(raw)


def precision_range(number: Decimal) -> tuple[float, float]:
    """The interval a decimal stands for at its written precision: 100 → [99.5, 100.5]."""
    half = Decimal(1).scaleb(number.as_tuple().exponent) / 2
    return float(number - half), float(number + half)


def approximate_range(number: Decimal) -> tuple[float, float]:
    """``ap``: within 10% of the value."""
    spread = abs(number) / 10
    return float(number - spread), float(number + spread)


def number_condition(column, value, number: Decimal, convert=float):
    """Compare ``column`` with ``number``; ``convert`` maps search values to the column's units."""
    low, high = (convert(x) for x in precision_range(number))
    if value.prefix in ("eq", "ne"):
        return compare(column, column, value.prefix, low, high)
    exact = convert(float(number))
    ap_low, ap_high = (convert(x) for x in approximate_range(number))
    return compare(column, column, value.prefix, exact, exact, min(ap_low, ap_high), max(ap_low, ap_high))


def condition(t, value, modifier):
    return number_condition(t.c.value, value, parse_number(value.raw))
