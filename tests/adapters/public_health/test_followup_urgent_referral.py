"""The urgent-finding rule at and around every threshold (DOMAIN.md: SBP >= 180 or DBP >= 110;
glucose >= 16.7 or < 3.9 mmol/L), and the Task it creates for the township centre."""

from __future__ import annotations

from datetime import date

import pytest

from adapters.public_health.follow_up_bundle import resource_id
from adapters.public_health.follow_up_import import import_record
from adapters.public_health.follow_up_record import FollowUpRecord
from adapters.public_health.urgent_referral import Thresholds, due_date, urgent_findings
from fhir_server.auth.identity import SYSTEM


def _record(kind="hypertension", **values) -> FollowUpRecord:
    return FollowUpRecord(kind=kind, visit_date=date(2025, 7, 1), resident_id="43053019580314025X", **values)


@pytest.mark.parametrize(("sbp", "dbp", "urgent"), [
    (179, 109, False), (180, 109, True), (181, 80, True),
    (150, 109, False), (150, 110, True), (150, 111, True), (179, 110, True),
])
def test_blood_pressure_thresholds(sbp, dbp, urgent):
    findings = urgent_findings(_record(sbp=sbp, dbp=dbp))
    assert [f.reason for f in findings] == (["urgent-blood-pressure"] if urgent else [])


@pytest.mark.parametrize(("glucose", "urgent"), [
    (16.6, False), (16.7, True), (16.8, True), (3.9, False), (3.8, True), (4.0, False), (7.0, False),
])
def test_glucose_thresholds(glucose, urgent):
    findings = urgent_findings(_record("diabetes", fasting_glucose=glucose))
    assert [f.reason for f in findings] == (["urgent-glucose"] if urgent else [])


def test_low_glucose_bound_can_be_inclusive():
    inclusive = Thresholds(glucose_low_inclusive=True)
    assert [f.text for f in urgent_findings(_record("diabetes", fasting_glucose=3.9), inclusive)] == [
        "空腹血糖3.9mmol/L≤3.9mmol/L"]


def test_both_findings_and_texts():
    findings = urgent_findings(_record("diabetes", sbp=185, dbp=112, fasting_glucose=17.2))
    assert [(f.reason, f.text) for f in findings] == [
        ("urgent-blood-pressure", "收缩压185mmHg≥180mmHg；舒张压112mmHg≥110mmHg"),
        ("urgent-glucose", "空腹血糖17.2mmol/L≥16.7mmol/L"),
    ]


def test_due_two_weeks_after_the_visit():
    assert due_date(date(2025, 12, 25)) == date(2026, 1, 8)


def _task_of(server, result):
    return server.resources.read("Task", result.urgent_task.split("/")[1], identity=SYSTEM)


@pytest.mark.parametrize(("sbp", "dbp", "glucose", "kind", "urgent"), [
    (179, 109, None, "hypertension", False), (180, 100, None, "hypertension", True),
    (170, 110, None, "hypertension", True),
    (130, 80, 16.6, "diabetes", False), (130, 80, 16.7, "diabetes", True),
    (130, 80, 3.9, "diabetes", False), (130, 80, 3.8, "diabetes", True),
])
def test_import_creates_the_task_only_at_urgent_values(county, sbp, dbp, glucose, kind, urgent):
    result = import_record(county, _record(kind, sbp=sbp, dbp=dbp, fasting_glucose=glucose))
    assert result.status == "created"
    assert (result.urgent_task is not None) is urgent
    key = f"{kind}-43053010110100001-20250701"
    tasks = [s.json() for s in county.search.search(
        county.search.parse("Task", [("patient", "Patient/pat-ph-1")]), identity=SYSTEM).matches]
    assert len(tasks) == (1 if urgent else 0)
    if urgent:
        task = _task_of(county, result)
        assert task["id"] == resource_id(f"{key}-urgent-referral-task")
        assert task["owner"]["reference"] == "Organization/org-th-01"  # org-vc-01-01's township centre
        assert task["restriction"]["period"]["end"] == "2025-07-15"


def test_an_existing_referral_suppresses_the_urgent_task(county):
    referred = _record(sbp=165, dbp=100, referral_reason="血压控制不满意", referral_to="青山县人民医院心内科")
    referred.visit_date = date(2025, 6, 25)
    assert import_record(county, referred).status == "created"
    result = import_record(county, _record(sbp=185, dbp=100))  # 6 days later
    assert result.status == "created" and result.urgent_task is None
    assert "urgent finding: a referral of the patient already exists, no new one" in result.notes
    later = _record(sbp=185, dbp=100)
    later.visit_date = date(2025, 7, 20)  # 25 days after the referral: a new urgent referral
    assert import_record(county, later).urgent_task is not None


def test_the_record_own_referral_is_marked_urgent(county):
    result = import_record(county, _record(sbp=190, dbp=100, referral_reason="血压急剧升高",
                                           referral_to="青山县人民医院心内科"))
    assert result.urgent_task is None
    request = county.resources.read("ServiceRequest", resource_id("hypertension-43053010110100001-20250701-referral"),
                                    identity=SYSTEM)
    assert request["priority"] == "urgent"
    assert request["reasonCode"][0]["coding"][0]["code"] == "urgent-blood-pressure"
    task = county.resources.read("Task", resource_id("hypertension-43053010110100001-20250701-referral-task"),
                                 identity=SYSTEM)
    assert task["priority"] == "urgent" and task["restriction"]["period"]["end"] == "2025-07-15"


def test_patient_of_a_township_centre_gets_its_own_centre(county):
    patient = county.resources.read("Patient", "pat-ph-2", identity=SYSTEM)
    patient["managingOrganization"] = {"reference": "Organization/org-th-02"}
    county.resources.update("Patient", "pat-ph-2", patient, identity=SYSTEM)
    record = FollowUpRecord(kind="diabetes", visit_date=date(2025, 7, 1), health_record_number="43053010210300002",
                            fasting_glucose=20.1)
    task = _task_of(county, import_record(county, record))
    assert task["owner"]["reference"] == "Organization/org-th-02"
