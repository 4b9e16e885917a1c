"""The numbers behind the synthetic county, in one frozen object with documented defaults.

Defaults follow the issue (60% hypertension, 25% type 2 diabetes, 4 follow-ups a year for
the last year, about 1M observations per 100k patients; groups in a third of villages with 15-20 members) and DOMAIN.md (ages 35+,
urgent referral at SBP >= 180 or DBP >= 110, glucose >= 16.7 or < 3.9 mmol/L).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

__all__ = ["CountyArea", "CountyParameters", "DEFAULT_PARAMETERS"]


@dataclass(frozen=True)
class CountyArea:
    """Where the county is. 430530 is an unassigned code inside Shaoyang (4305), Hunan."""

    province: str = "湖南省"
    city: str = "邵阳市"
    county: str = "青山县"
    county_code: str = "430530"
    # Rough centre of the county, for Location.position (longitude, latitude)
    centre: tuple[float, float] = (111.20, 27.05)
    # Division codes of nearby counties, used as birthplace in some resident IDs
    neighbour_codes: tuple[str, ...] = ("430524", "430525", "430522", "430581", "431224")


@dataclass(frozen=True)
class CountyParameters:
    area: CountyArea = field(default_factory=CountyArea)
    # Everything is anchored here so that the output does not depend on today's date.
    reference_date: date = date(2026, 6, 30)
    townships: int = 10
    villages_per_township: int = 10
    # Patients: ages 35-90, Beta(2.0, 1.5) on that range (mean about 66, mode about 72).
    age_min: int = 35
    age_max: int = 90
    age_beta: tuple[float, float] = (2.0, 1.5)
    born_elsewhere_share: float = 0.12
    # Shares of all patients; hypertension risk rises with age (factor 0.75 + 0.45 * x).
    hypertension_share: float = 0.60
    diabetes_share: float = 0.25
    both_share: float = 0.18
    # Follow-ups: this many a year, for this many years before the reference date.
    follow_ups_per_year: int = 4
    follow_up_years: int = 1
    # Share of patients whose usual readings are on target.
    bp_controlled_share: float = 0.65
    glucose_controlled_share: float = 0.60
    # Per follow-up chance of an urgent reading (SBP >= 180; glucose >= 16.7 / < 3.9).
    urgent_bp_rate: float = 0.015
    urgent_glucose_rate: float = 0.012
    # Every n-th diabetic patient's glucose comes in mg/dL (LOINC 1558-6), others mmol/L.
    glucose_mass_unit_every: int = 3
    # Unmanaged residents with an annual screening blood pressure.
    screening_share: float = 0.70
    # Self-management groups: share of villages with one, member count range.
    group_village_share: float = 1 / 3
    group_size: tuple[int, int] = (15, 20)


DEFAULT_PARAMETERS = CountyParameters()
