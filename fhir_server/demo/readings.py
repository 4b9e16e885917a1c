"""Plausible clinical values: a patient's usual levels, and the readings of one visit.

A patient gets usual levels once (``draw_physiology``); each follow-up or lab draw adds
visit-to-visit noise, and now and then an urgent reading (SBP >= 180 mmHg, fasting glucose
>= 16.7 or < 3.9 mmol/L) so that referral rules have something to find. Most managed
patients are controlled (BP < 140/90, fasting glucose < 7.0 mmol/L) most of the time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fhir_server.demo.parameters import CountyParameters

__all__ = ["Physiology", "draw_physiology", "BloodPressure", "visit_blood_pressure",
           "visit_weight", "visit_heart_rate", "visit_glucose", "LabValues", "draw_lab_values"]


def _clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


@dataclass(slots=True)
class Physiology:
    """A patient's usual levels (the centre of their readings)."""

    sex: str
    sbp: float
    dbp: float
    weight: float
    heart_rate: float
    glucose: float | None  # usual fasting glucose, mmol/L; None when not diabetic
    cholesterol: float  # mg/dL
    creatinine: float  # mg/dL


def draw_physiology(
    rng: random.Random, sex: str, age: int, hypertensive: bool, diabetic: bool,
    params: CountyParameters,
) -> Physiology:
    gauss = rng.gauss
    if hypertensive:
        controlled = rng.random() < params.bp_controlled_share
        sbp = gauss(127, 6) if controlled else gauss(151, 8)
    else:
        sbp = gauss(122, 8)
    # Diastolic pressure falls with age (isolated systolic hypertension in the elderly).
    dbp = 0.45 * sbp + gauss(18, 4) - 0.15 * (age - 60)
    glucose = None
    if diabetic:
        controlled = rng.random() < params.glucose_controlled_share
        glucose = gauss(6.2, 0.35) if controlled else gauss(8.8, 1.2)
        glucose = _clamp(glucose, 4.5, 14.0)
    overweight = 3.0 if (hypertensive or diabetic) else 0.0
    weight = (gauss(66, 9) if sex == "male" else gauss(56, 8)) + overweight
    creatinine = (gauss(0.95, 0.18) if sex == "male" else gauss(0.75, 0.14)) + 0.005 * (age - 60)
    if rng.random() < 0.03:  # chronic kidney disease
        creatinine += abs(gauss(0.8, 0.4))
    return Physiology(
        sex=sex,
        sbp=_clamp(sbp, 95, 175),
        dbp=_clamp(dbp, 55, 105),
        weight=_clamp(weight, 38, 120),
        heart_rate=_clamp(gauss(74, 7), 52, 105),
        glucose=glucose,
        cholesterol=_clamp(gauss(195, 35) + (8 if diabetic else 0), 110, 330),
        creatinine=_clamp(creatinine, 0.4, 3.5),
    )


@dataclass(slots=True)
class BloodPressure:
    systolic: int
    diastolic: int


def visit_blood_pressure(
    rng: random.Random, usual: Physiology, params: CountyParameters
) -> BloodPressure:
    sbp = usual.sbp + rng.gauss(0, 7)
    dbp = usual.dbp + rng.gauss(0, 5)
    if rng.random() < params.urgent_bp_rate:
        sbp = max(180.0, rng.gauss(186, 5))
        dbp += abs(rng.gauss(10, 4))
    sbp = round(_clamp(sbp, 90, 230))
    dbp = round(_clamp(dbp, 45, 130))
    return BloodPressure(sbp, min(dbp, sbp - 20))


def visit_weight(rng: random.Random, usual: Physiology) -> float:
    return round(_clamp(usual.weight + rng.gauss(0, 0.7), 35, 125), 1)


def visit_heart_rate(rng: random.Random, usual: Physiology) -> int:
    return round(_clamp(usual.heart_rate + rng.gauss(0, 4), 45, 130))


def visit_glucose(rng: random.Random, usual: Physiology, params: CountyParameters) -> float:
    """Fasting glucose in mmol/L, one decimal."""
    assert usual.glucose is not None, "glucose is measured for diabetic patients only"
    if rng.random() < params.urgent_glucose_rate:
        if rng.random() < 0.65:
            return round(max(16.7, rng.gauss(18.5, 1.5)), 1)
        return round(_clamp(rng.gauss(3.3, 0.3), 2.2, 3.8), 1)
    return round(_clamp(usual.glucose + rng.gauss(0, 0.6), 3.9, 16.0), 1)


@dataclass(slots=True)
class LabValues:
    hba1c: float | None  # %, diabetic patients only
    cholesterol: int  # mg/dL
    creatinine: float  # mg/dL


def draw_lab_values(rng: random.Random, usual: Physiology) -> LabValues:
    hba1c = None
    if usual.glucose is not None:
        hba1c = round(_clamp(0.6 * usual.glucose + 2.6 + rng.gauss(0, 0.3), 4.5, 14.0), 1)
    return LabValues(
        hba1c=hba1c,
        cholesterol=round(_clamp(usual.cholesterol + rng.gauss(0, 12), 100, 350)),
        creatinine=round(_clamp(usual.creatinine + rng.gauss(0, 0.06), 0.3, 4.0), 2),
    )
