"""One resident's record: the Patient and, for a managed patient, everything around them.

A managed patient (hypertension and/or type 2 diabetes) gets their Conditions, a CarePlan,
4 follow-up Encounters a year for the last 2 years at their village clinic with blood
pressure, weight and heart rate (and fasting glucose for diabetes) at each, and a yearly
lab DiagnosticReport from the county hospital laboratory (total cholesterol, creatinine,
and HbA1c for diabetes). Most other residents have one screening blood pressure in the
last year (the annual free measurement for residents aged 35+).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import accumulate

from fhir_server.demo import codes
from fhir_server.demo.codes import DIABETES, HYPERTENSION
from fhir_server.demo.datatypes import concept, local_datetime, quantity, reference
from fhir_server.identifiers import health_record_number, resident_id
from fhir_server.demo.names import person_name
from fhir_server.demo.network import LAB_ID, Clinic, Network, address
from fhir_server.demo.parameters import CountyParameters
from fhir_server.demo.readings import (
    BloodPressure,
    Physiology,
    draw_lab_values,
    draw_physiology,
    visit_blood_pressure,
    visit_glucose,
    visit_heart_rate,
    visit_weight,
)

__all__ = ["Resident", "ResidentGenerator", "follow_up_quarters"]

_SEQUENCE_STEP = 37  # coprime with 499: walks all sequence codes of a (region, day, sex)
_SERIALS_PER_DAY = 499


@dataclass(slots=True)
class Resident:
    patient_id: str
    clinic: Clinic
    conditions: tuple[str, ...]  # HYPERTENSION and/or DIABETES
    management_start: date | None
    resources: list[dict]


def follow_up_quarters(params: CountyParameters) -> list[tuple[date, int]]:
    """(first day, length in days) of each quarter in the follow-up window, oldest first."""
    end = params.reference_date + timedelta(days=1)
    quarters = []
    year, month = end.year, end.month
    for _ in range(params.follow_up_years * 4):
        month -= 3
        if month < 1:
            month += 12
            year -= 1
        start = date(year, month, 1)
        quarters.append((start, (end - start).days))
        end = start
    return quarters[::-1]


def _observation(obs_id: str, key: str, category: str, subject: str, effective: str, *,
                 value: tuple[float | int, str] | None = None,
                 components: list[dict] | None = None, encounter: str | None = None,
                 performer: dict | None = None, issued: str | None = None,
                 reference_range: list[dict] | None = None) -> dict:
    """An Observation coded by ``codes.LOINC_CODES[key]``, with ``value`` = (number, UCUM)."""
    loinc, display, text = codes.LOINC_CODES[key]
    obs = {
        "resourceType": "Observation",
        "id": obs_id,
        "meta": codes.profile(codes.OBSERVATION_PROFILES[key]),
        "status": "final",
        "category": [concept(codes.OBSERVATION_CATEGORY, category)],
        "code": concept(codes.LOINC, loinc, display, text),
        "subject": {"reference": subject},
    }
    if encounter is not None:
        obs["encounter"] = {"reference": encounter}
    obs["effectiveDateTime"] = effective
    if issued is not None:
        obs["issued"] = issued
    if performer is not None:
        obs["performer"] = [performer]
    if value is not None:
        obs["valueQuantity"] = quantity(*value)
    if components is not None:
        obs["component"] = components
    if reference_range is not None:
        obs["referenceRange"] = reference_range
    return obs


def _component(key: str, value: int) -> dict:
    loinc, display, text = codes.LOINC_CODES[key]
    return {"code": concept(codes.LOINC, loinc, display, text),
            "valueQuantity": quantity(value, "mm[Hg]")}


def _range(low: float | None, high: float | None, unit: str) -> list[dict]:
    rng: dict = {}
    if low is not None:
        rng["low"] = quantity(low, unit)
    if high is not None:
        rng["high"] = quantity(high, unit)
    return [rng]


def _classify(encounter: dict, day: date, bp: BloodPressure, fasting_glucose: float | None) -> None:
    """This visit's classification and next visit date, from the readings just taken:
    controlled when BP < 140/90 and (for diabetes) fasting glucose < 7.0 mmol/L."""
    controlled = bp.systolic < 140 and bp.diastolic < 90 and (
        fasting_glucose is None or fasting_glucose < 7.0)
    code = "1" if controlled else "2"
    encounter["extension"] += [
        {"url": codes.VISIT_CLASSIFICATION_EXTENSION,
         "valueCoding": {"system": codes.VISIT_CLASSIFICATION, "code": code,
                         "display": codes.VISIT_CLASSIFICATIONS[code]}},
        {"url": codes.NEXT_VISIT_EXTENSION,
         "valueDate": (day + timedelta(days=codes.NEXT_VISIT_DAYS[code])).isoformat()},
    ]


class ResidentGenerator:
    """Makes residents one at a time from one random stream; bounded state (counters)."""

    def __init__(self, rng: random.Random, network: Network, params: CountyParameters):
        self.rng = rng
        self.network = network
        self.params = params
        self.area = params.area
        self.reference = params.reference_date
        self.quarters = follow_up_quarters(params)
        self.window_start = self.quarters[0][0]
        self._clinic_cum = tuple(accumulate(c.population_weight for c in network.clinics))
        # (region, birth date, sex) -> people numbered so far; at most ~20k days x 2 x regions.
        self._sequence_counts: dict[tuple[str, date, str], int] = {}
        # clinic organisation id -> residents with a health record so far
        self._record_counts: dict[str, int] = {}
        self._diabetic_count = 0

    # -- identity -------------------------------------------------------------------
    def _birth_date(self) -> date:
        p = self.params
        a, b = p.age_beta
        age = p.age_min + int((p.age_max - p.age_min + 1) * self.rng.betavariate(a, b))
        age = min(age, p.age_max)
        ref = self.reference
        last_birthday = date(ref.year - age, ref.month, min(ref.day, 28 if ref.month == 2 else 31))
        return last_birthday - timedelta(days=self.rng.randrange(365))

    def _resident_id(self, birth: date, sex: str) -> str:
        area = self.area
        regions = [area.county_code, *area.neighbour_codes]
        if self.rng.random() < self.params.born_elsewhere_share:
            regions.insert(0, self.rng.choice(area.neighbour_codes))
        for region in regions:
            key = (region, birth, sex)
            count = self._sequence_counts.get(key, 0)
            if count < _SERIALS_PER_DAY:
                self._sequence_counts[key] = count + 1
                offset = (birth.toordinal() * 7 + (sex == "female")) % _SERIALS_PER_DAY
                serial = (offset + count * _SEQUENCE_STEP) % _SERIALS_PER_DAY + 1
                return resident_id(region, birth, serial, sex)
        raise RuntimeError("no resident ID sequence codes left for this birth date")

    def _health_record_number(self, clinic: Clinic) -> str:
        count = self._record_counts.get(clinic.organization_id, 0) + 1
        self._record_counts[clinic.organization_id] = count
        return health_record_number(self.area.county_code, clinic.township_code,
                                    clinic.village_code, count)

    # -- the resident -----------------------------------------------------------------
    def resident(self, index: int) -> Resident:
        rng, params = self.rng, self.params
        pid = f"{index:06d}"
        patient_ref = f"Patient/pat-{pid}"
        sex = "female" if rng.random() < 0.52 else "male"
        birth = self._birth_date()
        age = self.reference.year - birth.year - (
            (self.reference.month, self.reference.day) < (birth.month, birth.day))
        clinic = rng.choices(self.network.clinics, cum_weights=self._clinic_cum)[0]
        family, given = person_name(rng, sex)

        x = (age - params.age_min) / (params.age_max - params.age_min)
        hypertensive = rng.random() < min(0.95, params.hypertension_share * (0.75 + 0.45 * x))
        if hypertensive:
            p_dm = params.both_share / params.hypertension_share
        else:
            p_dm = (params.diabetes_share - params.both_share) / (1 - params.hypertension_share)
        diabetic = rng.random() < p_dm
        conditions = tuple(c for c, has in ((HYPERTENSION, hypertensive), (DIABETES, diabetic))
                           if has)

        line = (f"{clinic.township_name}{clinic.village_name}{rng.randint(1, 12)}组"
                f"{rng.randint(1, 60)}号")
        patient = {
            "resourceType": "Patient",
            "id": f"pat-{pid}",
            "meta": codes.profile(codes.PROFILES["Patient"]),
            "identifier": [
                {"use": "official",
                 "type": concept(codes.IDENTIFIER_TYPE, "NI", None, "居民身份证"),
                 "system": codes.OID_RESIDENT_ID, "value": self._resident_id(birth, sex)},
                {"use": "usual", "type": {"text": "健康档案编号"},
                 "system": codes.OID_HEALTH_RECORD, "value": self._health_record_number(clinic)},
            ],
            "active": True,
            "name": [{"use": "official", "text": family + given, "family": family,
                      "given": [given]}],
            "gender": sex,
            "birthDate": birth.isoformat(),
            "address": [address(self.area, line, clinic.division_code,
                                clinic.township_name + clinic.village_name, use="home")],
            "generalPractitioner": [reference("PractitionerRole", clinic.doctor_role_id)],
            "managingOrganization": reference("Organization", clinic.organization_id),
        }
        resources = [patient]
        usual = draw_physiology(rng, sex, age, hypertensive, diabetic, params)
        start = None
        if conditions:
            start = self._managed(resources, pid, patient_ref, clinic, conditions, usual, age)
        elif rng.random() < params.screening_share:
            self._screening(resources, pid, patient_ref, clinic, usual)
        return Resident(f"pat-{pid}", clinic, conditions, start, resources)

    # -- managed patients ---------------------------------------------------------------
    def _managed(self, out: list[dict], pid: str, patient_ref: str, clinic: Clinic,
                 conditions: tuple[str, ...], usual: Physiology, age: int) -> date:
        rng, params = self.rng, self.params
        doctor = clinic.doctor_role_id
        # Diagnosed at least two months before the follow-up window, at most 20 years
        # before it and not before age 32.
        max_days = max(61, int(365.25 * min(20, age - 2 - 32)))
        diagnosed = self.window_start - timedelta(days=rng.randrange(60, max_days + 1))
        managed_from = diagnosed + timedelta(days=rng.randrange(0, 30))

        condition_refs = []
        for key in conditions:
            icd, display, text = codes.CONDITIONS[key]
            cid = f"cond-{pid}-{'htn' if key == HYPERTENSION else 'dm'}"
            condition_refs.append({"reference": f"Condition/{cid}"})
            out.append({
                "resourceType": "Condition",
                "id": cid,
                "meta": codes.profile(codes.PROFILES["Condition"]),
                "clinicalStatus": concept(codes.CONDITION_CLINICAL, "active"),
                "verificationStatus": concept(codes.CONDITION_VERIFICATION, "confirmed"),
                "category": [concept(codes.CONDITION_CATEGORY, "problem-list-item")],
                "code": concept(codes.ICD10, icd, display, text),
                "subject": {"reference": patient_ref},
                "onsetDateTime": diagnosed.isoformat(),
                "recordedDate": managed_from.isoformat(),
                "recorder": reference("PractitionerRole", doctor),
            })

        titles = "、".join(codes.CONDITIONS[k][2] for k in conditions)
        monitored = "血压、体重、心率" + ("及空腹血糖" if DIABETES in conditions else "")
        out.append({
            "resourceType": "CarePlan",
            "id": f"cp-{pid}",
            "meta": codes.profile(codes.PROFILES["CarePlan"]),
            "status": "active",
            "intent": "plan",
            "category": [concept(codes.CARE_PLAN_CATEGORY, "chronic-disease-management",
                                 "慢性病患者健康管理", "慢性病患者健康管理")],
            "title": f"{titles}患者健康管理",
            "description": (f"{titles}患者规范管理：每季度至少面对面随访1次，每年至少1次较全面的"
                            f"健康检查；监测{monitored}；生活方式指导与用药指导。"),
            "subject": {"reference": patient_ref},
            "period": {"start": managed_from.isoformat()},
            "created": managed_from.isoformat(),
            "author": reference("PractitionerRole", doctor),
            "addresses": [dict(r) for r in condition_refs],
            "activity": [{"detail": {
                "kind": "Appointment",
                "code": {"text": "面对面随访"},
                "status": "in-progress",
                "scheduledTiming": {"repeat": {"frequency": 1, "period": 3, "periodUnit": "mo"}},
                "performer": [reference("PractitionerRole", doctor)],
                "description": "每3个月随访1次；控制不满意者2周内复诊",
            }}],
        })

        diabetic = DIABETES in conditions
        glucose_in_mass = False
        if diabetic:
            # Every n-th diabetic patient (the 2nd, then every n-th after it) in mg/dL.
            every = params.glucose_mass_unit_every
            glucose_in_mass = every > 0 and self._diabetic_count % every == 1 % every
            self._diabetic_count += 1
        for number, (q_start, q_days) in enumerate(self.quarters, 1):
            day = q_start + timedelta(days=rng.randrange(3, q_days - 3))
            begin = datetime.combine(day, time(8)) + timedelta(minutes=rng.randrange(510))
            eid = f"enc-{pid}-f{number}"
            enc_ref = f"Encounter/{eid}"
            effective = local_datetime(begin + timedelta(minutes=5))
            encounter = {
                "resourceType": "Encounter",
                "id": eid,
                "meta": codes.profile(codes.PROFILES["follow-up"]),
                "extension": [{"url": codes.VISIT_MODE_EXTENSION,
                               "valueCoding": {"system": codes.VISIT_MODE, "code": "1",
                                               "display": "门诊"}}],
                "status": "finished",
                "class": {"system": codes.ACT_CODE, "code": "AMB", "display": "ambulatory"},
                "type": [concept(codes.ENCOUNTER_TYPE, *codes.ENCOUNTER_TYPES[k])
                         for k in conditions],
                "subject": {"reference": patient_ref},
                "participant": [{"individual": reference("PractitionerRole", doctor)}],
                "period": {"start": local_datetime(begin),
                           "end": local_datetime(begin + timedelta(
                               minutes=rng.randrange(10, 31)))},
                "reasonReference": [dict(r) for r in condition_refs],
                "location": [{"location": reference("Location", clinic.location_id)}],
                "serviceProvider": reference("Organization", clinic.organization_id),
            }
            out.append(encounter)
            bp = visit_blood_pressure(rng, usual, params)
            prefix = f"obs-{pid}-f{number}"
            vital = {"encounter": enc_ref}
            out.append(_observation(
                f"{prefix}-bp", "bp", "vital-signs", patient_ref, effective, **vital,
                performer=reference("PractitionerRole", doctor),
                components=[_component("sbp", bp.systolic), _component("dbp", bp.diastolic)]))
            out.append(_observation(
                f"{prefix}-wt", "weight", "vital-signs", patient_ref, effective, **vital,
                performer=reference("PractitionerRole", doctor),
                value=(visit_weight(rng, usual), "kg")))
            out.append(_observation(
                f"{prefix}-hr", "heart_rate", "vital-signs", patient_ref, effective, **vital,
                performer=reference("PractitionerRole", doctor),
                value=(visit_heart_rate(rng, usual), "/min")))
            mmol = None
            if diabetic:
                mmol = visit_glucose(rng, usual, params)
                if glucose_in_mass:
                    key = "glucose_mass"
                    value = (round(mmol * codes.GLUCOSE_MG_PER_DL_PER_MMOL_PER_L), "mg/dL")
                else:
                    key, value = "glucose_moles", (mmol, "mmol/L")
                out.append(_observation(
                    f"{prefix}-glu", key, "laboratory", patient_ref, effective, **vital,
                    performer=reference("PractitionerRole", doctor), value=value))
            _classify(encounter, day, bp, mmol)

        self._yearly_labs(out, pid, patient_ref, usual)
        return managed_from

    def _yearly_labs(self, out: list[dict], pid: str, patient_ref: str, usual: Physiology) -> None:
        rng = self.rng
        male = usual.sex == "male"
        for year in range(1, self.params.follow_up_years + 1):
            q_start, q_days = self.quarters[(year - 1) * 4 + rng.randrange(4)]
            day = q_start + timedelta(days=rng.randrange(1, q_days - 1))
            drawn = datetime.combine(day, time(7, 30)) + timedelta(minutes=rng.randrange(120))
            issued_at = datetime.combine(day, time(14)) + timedelta(minutes=rng.randrange(180))
            effective, issued = local_datetime(drawn), local_datetime(issued_at)
            values = draw_lab_values(rng, usual)
            prefix = f"obs-{pid}-lab{year}"
            results: list[dict] = []
            lab_kw = {"issued": issued}
            if values.hba1c is not None:
                results.append(_observation(
                    f"{prefix}-hba1c", "hba1c", "laboratory", patient_ref, effective, **lab_kw,
                    performer=reference("Organization", LAB_ID), value=(values.hba1c, "%"),
                    reference_range=_range(4.0, 6.0, "%")))
            results.append(_observation(
                f"{prefix}-chol", "cholesterol", "laboratory", patient_ref, effective, **lab_kw,
                performer=reference("Organization", LAB_ID),
                value=(values.cholesterol, "mg/dL"), reference_range=_range(None, 200, "mg/dL")))
            results.append(_observation(
                f"{prefix}-crea", "creatinine", "laboratory", patient_ref, effective, **lab_kw,
                performer=reference("Organization", LAB_ID),
                value=(values.creatinine, "mg/dL"),
                reference_range=_range(0.7, 1.3, "mg/dL") if male else _range(0.5, 1.1, "mg/dL")))
            out += results
            loinc, display, text = codes.LOINC_CODES["lab_report"]
            out.append({
                "resourceType": "DiagnosticReport",
                "id": f"dr-{pid}-lab{year}",
                "meta": codes.profile(codes.PROFILES["DiagnosticReport"]),
                "status": "final",
                "category": [concept(codes.DIAGNOSTIC_SERVICE_SECTION, "LAB", "Laboratory")],
                "code": concept(codes.LOINC, loinc, display, text),
                "subject": {"reference": patient_ref},
                "effectiveDateTime": effective,
                "issued": issued,
                "performer": [reference("Organization", LAB_ID)],
                "result": [{"reference": f"Observation/{o['id']}"} for o in results],
            })

    # -- screening of unmanaged residents ----------------------------------------------------
    def _screening(self, out: list[dict], pid: str, patient_ref: str, clinic: Clinic,
                   usual: Physiology) -> None:
        rng = self.rng
        day = self.reference - timedelta(days=rng.randrange(1, 365))
        begin = datetime.combine(day, time(8)) + timedelta(minutes=rng.randrange(510))
        eid = f"enc-{pid}-s1"
        out.append({
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": {"system": codes.ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "type": [concept(codes.ENCOUNTER_TYPE, *codes.ENCOUNTER_TYPES["screening"])],
            "subject": {"reference": patient_ref},
            "participant": [{"individual": reference("PractitionerRole", clinic.doctor_role_id)}],
            "period": {"start": local_datetime(begin),
                       "end": local_datetime(begin + timedelta(minutes=rng.randrange(5, 16)))},
            "location": [{"location": reference("Location", clinic.location_id)}],
            "serviceProvider": reference("Organization", clinic.organization_id),
        })
        bp = visit_blood_pressure(rng, usual, self.params)
        out.append(_observation(
            f"obs-{pid}-s1-bp", "bp", "vital-signs", patient_ref,
            local_datetime(begin + timedelta(minutes=3)), encounter=f"Encounter/{eid}",
            performer=reference("PractitionerRole", clinic.doctor_role_id),
            components=[_component("sbp", bp.systolic), _component("dbp", bp.diastolic)]))
