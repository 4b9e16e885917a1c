"""Date index: every date, dateTime, instant, Period and Timing as an inclusive UTC range.

A value is indexed at its own precision: ``2024-03`` covers the whole of March 2024. A dateTime
without a time zone is read as UTC (FHIR leaves it to the server), and so is a date.
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta, UTC
from functools import lru_cache

from fhir_server.errors import InvalidRequest
from fhir_server.storage.index.ranges import compare

KIND = "date"

MIN = datetime(1, 1, 1)
MAX = datetime(9999, 12, 31, 23, 59, 59, 999999)

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def parse_range(text: str) -> tuple[datetime, datetime]:
    """The inclusive naive-UTC range a FHIR date/dateTime/instant string stands for.

    Raises ValueError for anything else (also for a moment outside years 1-9999 in UTC).
    """
    try:
        return _parse_range(text)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the supported range of dates") from None


# From the start of a day, minute or second to its last microsecond.
_REST_OF_DAY = timedelta(days=1, microseconds=-1)
_REST_OF_MINUTE = timedelta(minutes=1, microseconds=-1)
_REST_OF_SECOND = timedelta(seconds=1, microseconds=-1)


def _parse_range(text: str) -> tuple[datetime, datetime]:
    match = _DATE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a FHIR date or dateTime")
    y, m, d, hour, minute, second, fraction, tz = match.groups()
    year = int(y)
    if m is None:
        low, high = datetime(year, 1, 1), datetime(year, 12, 31, 23, 59, 59, 999999)
    elif d is None:
        month = int(m)
        last = calendar.monthrange(year, month)[1]
        low, high = datetime(year, month, 1), datetime(year, month, last, 23, 59, 59, 999999)
    elif hour is None:
        low = datetime(year, int(m), int(d))
        high = low + _REST_OF_DAY
    else:
        if second is None:
            low = datetime(year, int(m), int(d), int(hour), int(minute or 0))
            high = low + _REST_OF_MINUTE
        elif fraction is None:
            low = datetime(year, int(m), int(d), int(hour), int(minute or 0), int(second))
            high = low + _REST_OF_SECOND
        else:
            micro = int(fraction[:6].ljust(6, "0"))
            low = datetime(year, int(m), int(d), int(hour), int(minute or 0), int(second), micro)
            high = low
        if tz and tz != "Z":
            offset = _utc_offset(tz)
            low, high = low - offset, high - offset
    return low, high


@lru_cache(maxsize=256)
def _utc_offset(tz: str) -> timedelta:
    """``+08:00`` as a timedelta (a county's data uses one or two offsets)."""
    return timedelta(minutes=(int(tz[1:3]) * 60 + int(tz[4:6])) * (1 if tz[0] == "+" else -1))


def to_utc_naive(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _range(text) -> tuple[datetime, datetime] | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_range(text)
    except ValueError:
        return None


def extract(node) -> list[dict]:
    if isinstance(node, str):
        rng = _range(node)
        return [{"low": rng[0], "high": rng[1]}] if rng else []
    if not isinstance(node, dict):
        return []
    if "start" in node or "end" in node:  # Period: an open end is unbounded
        start, end = _range(node.get("start")), _range(node.get("end"))
        if not (start or end):
            return []
        return [{"low": start[0] if start else MIN, "high": end[1] if end else MAX}]
    if "event" in node or "repeat" in node:  # Timing: each event, and the bounds
        rows = [r for e in node.get("event", []) for r in extract(e)]
        bounds = (node.get("repeat") or {}).get("boundsPeriod")
        return rows + (extract(bounds) if bounds else [])
    return []


def condition(t, value, modifier):
    return range_condition(t.c.low, t.c.high, value)


def range_condition(low_col, high_col, value):
    try:
        low, high = parse_range(value.raw)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    # ap: within 10% of the distance between the value and now, at least a day
    now = datetime.now(UTC).replace(tzinfo=None)
    gap = max(abs(now - low) / 10, timedelta(days=1))
    ap_low = low - gap if low - MIN > gap else MIN
    ap_high = high + gap if MAX - high > gap else MAX
    return compare(low_col, high_col, value.prefix, low, high, ap_low, ap_high)
