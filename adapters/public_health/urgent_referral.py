"""The urgent-finding rule of a follow-up (DOMAIN.md, national specification 3rd edition).

A follow-up is urgent when SBP >= 180 or DBP >= 110 mmHg, or the glucose is >= 16.7 or
< 3.9 mmol/L. Then the township centre responsible for the patient gets an urgent-referral
Task, due 2 weeks after the visit (the centre must follow the referred patient up within 2
weeks), unless a referral already exists: the record names one itself (转诊原因 / 转诊机构),
or the patient has a referral ServiceRequest authored from 14 days before the visit on.

The glucose lower bound: the issue and the hypertension/diabetes follow-up text say
"< 3.9 mmol/L"; DOMAIN.md's list of urgent diabetes signs says "<= 3.9" once. The default
is ``< 3.9`` (``Thresholds.glucose_low_inclusive`` turns it into ``<= 3.9``).

The non-numeric danger signs (altered consciousness, severe headache...) are not in the
form's fields and are not judged here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from adapters.public_health.follow_up_record import FollowUpRecord

__all__ = ["Thresholds", "Finding", "urgent_findings", "DEFAULT_THRESHOLDS", "due_date"]


@dataclass(frozen=True)
class Thresholds:
    systolic: float = 180  # mmHg, urgent at or above
    diastolic: float = 110  # mmHg, urgent at or above
    glucose_high: float = 16.7  # mmol/L, urgent at or above
    glucose_low: float = 3.9  # mmol/L, urgent below (or at, when glucose_low_inclusive)
    glucose_low_inclusive: bool = False
    follow_up_days: int = 14  # the township centre follows the patient up within this


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Finding:
    reason: str  # referral-reason code: urgent-blood-pressure | urgent-glucose
    text: str  # Chinese, as written on a referral


def urgent_findings(record: FollowUpRecord, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[Finding]:
    """The urgent findings of a record (empty when there is none)."""
    found: list[Finding] = []
    bp = []
    if record.sbp is not None and record.sbp >= thresholds.systolic:
        bp.append(f"收缩压{record.sbp}mmHg≥{thresholds.systolic:g}mmHg")
    if record.dbp is not None and record.dbp >= thresholds.diastolic:
        bp.append(f"舒张压{record.dbp}mmHg≥{thresholds.diastolic:g}mmHg")
    if bp:
        found.append(Finding("urgent-blood-pressure", "；".join(bp)))
    glucose = record.fasting_glucose
    if glucose is not None:
        low = glucose <= thresholds.glucose_low if thresholds.glucose_low_inclusive else glucose < thresholds.glucose_low
        if glucose >= thresholds.glucose_high:
            found.append(Finding("urgent-glucose", f"空腹血糖{glucose:g}mmol/L≥{thresholds.glucose_high:g}mmol/L"))
        elif low:
            sign = "≤" if thresholds.glucose_low_inclusive else "<"
            found.append(Finding("urgent-glucose", f"空腹血糖{glucose:g}mmol/L{sign}{thresholds.glucose_low:g}mmol/L"))
    return found


def due_date(visit: date, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> date:
    return visit + timedelta(days=thresholds.follow_up_days)
