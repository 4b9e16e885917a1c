"""Search prefixes (eq, ne, gt, lt, ge, le, sa, eb, ap) as conditions over an indexed range.

The indexed value covers [low, high]; the search value covers [v_low, v_high]. ``eq`` asks the
search range to contain the indexed range; ``gt``/``lt`` look past the search range's edges;
``sa``/``eb`` ask for no overlap at all; ``ap`` asks for overlap with a widened search range.
"""

from __future__ import annotations

from sqlalchemy import and_, not_
from sqlalchemy.sql.elements import ColumnElement


def compare(low, high, prefix: str, v_low, v_high, ap_low=None, ap_high=None) -> ColumnElement:
    if prefix == "eq":
        return and_(low >= v_low, high <= v_high)
    if prefix == "ne":
        return not_(and_(low >= v_low, high <= v_high))
    if prefix == "gt":
        return high > v_high
    if prefix == "lt":
        return low < v_low
    if prefix == "ge":
        return high >= v_low
    if prefix == "le":
        return low <= v_high
    if prefix == "sa":
        return low > v_high
    if prefix == "eb":
        return high < v_low
    if prefix == "ap":
        return and_(low <= ap_high, high >= ap_low)
    raise ValueError(f"unknown prefix {prefix}")
