"""The urgent-finding rule for follow-ups another system sends through the FHIR API
(``adapters/public_health/urgent_watch.py``), over HTTP: at and around each threshold, one
referral however often the visit is written, none when a referral exists or the Encounter is
not a follow-up, and nothing when the follow-up itself is refused."""

from __future__ import annotations

import pytest

from adapters.public_health.follow_up_bundle import resource_id
from fhir_server.demo import codes

PATIENT = "Patient/pat-ph-1"  # managed by village clinic org-vc-01-01, township centre org-th-01
KEY = "{kind}-43053010110100001-20250701"  # the import's record key of the same visit


def _encounter(kind: str = "hypertension", type_code: str | None = None) -> dict:
    return {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"coding": [{"system": codes.ENCOUNTER_TYPE, "code": type_code or codes.ENCOUNTER_TYPES[kind][0]}]}],
        "subject": {"reference": PATIENT},
        "period": {"start": "2025-07-01"},
    }


def _blood_pressure(encounter: str, sbp: float, dbp: float) -> dict:
    def component(code: str, value: float) -> dict:
        return {"code": {"coding": [{"system": codes.LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                  "code": "mm[Hg]"}}

    return {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": codes.LOINC, "code": "85354-9"}]},
        "subject": {"reference": PATIENT}, "encounter": {"reference": encounter},
        "effectiveDateTime": "2025-07-01",
        "component": [component("8480-6", sbp), component("8462-4", dbp)],
    }


def _glucose(encounter: str, value: float, unit: str = "mmol/L") -> dict:
    return {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": codes.LOINC, "code": "14771-0" if unit == "mmol/L" else "1558-6"}]},
        "subject": {"reference": PATIENT}, "encounter": {"reference": encounter},
        "effectiveDateTime": "2025-07-01",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def _transaction(encounter: dict, *observations) -> dict:
    entries = [{"fullUrl": "urn:uuid:7a1c4e2e-0000-4000-8000-000000000001", "resource": encounter,
                "request": {"method": "POST", "url": "Encounter"}}]
    entries += [{"resource": make("urn:uuid:7a1c4e2e-0000-4000-8000-000000000001"),
                 "request": {"method": "POST", "url": "Observation"}} for make in observations]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _post(fhir, bundle: dict) -> dict[str, str]:
    """Post a transaction; the locations it answers, by resource type (last of each)."""
    response = fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    return {e["response"]["location"].split("/")[0]: "/".join(e["response"]["location"].split("/")[:2])
            for e in response.json()["entry"]}


def _tasks(fhir) -> list[dict]:
    return [e["resource"] for e in fhir.search(f"Task?patient={PATIENT}").get("entry", [])]


@pytest.mark.parametrize(("sbp", "dbp", "urgent"), [
    (179, 109, False), (180, 109, True), (150, 110, True), (179.9, 109.9, False),
])
def test_blood_pressure_posted_in_a_follow_up(county, fhir, sbp, dbp, urgent):
    written = _post(fhir, _transaction(_encounter(), lambda enc: _blood_pressure(enc, sbp, dbp)))
    tasks = _tasks(fhir)
    assert len(tasks) == (1 if urgent else 0)
    if not urgent:
        return
    task = tasks[0]
    assert task["id"] == resource_id(KEY.format(kind="hypertension") + "-urgent-referral-task")
    assert task["owner"]["reference"] == "Organization/org-th-01"
    assert task["priority"] == "urgent"
    assert task["restriction"]["period"]["end"] == "2025-07-15"
    assert task["encounter"]["reference"] == written["Encounter"]
    request = fhir.get(task["focus"]["reference"]).json()
    assert request["reasonCode"][0]["coding"][0]["code"] == "urgent-blood-pressure"
    assert request["reasonReference"] == [{"reference": written["Observation"]}]
    assert request["encounter"]["reference"] == written["Encounter"]


@pytest.mark.parametrize(("value", "unit", "urgent"), [
    (16.6, "mmol/L", False), (16.7, "mmol/L", True), (3.9, "mmol/L", False), (3.8, "mmol/L", True),
    (301, "mg/dL", True), (298, "mg/dL", False),
])
def test_glucose_posted_in_a_diabetes_follow_up(county, fhir, value, unit, urgent):
    _post(fhir, _transaction(_encounter("diabetes"), lambda enc: _glucose(enc, value, unit)))
    tasks = _tasks(fhir)
    assert len(tasks) == (1 if urgent else 0)
    if urgent:
        assert tasks[0]["id"] == resource_id(KEY.format(kind="diabetes") + "-urgent-referral-task")
        assert "空腹血糖" in tasks[0]["description"]


def test_observation_written_after_its_encounter_and_again(county, fhir):
    encounter = fhir.create(_encounter())
    ref = f"Encounter/{encounter['id']}"
    observation = fhir.create(_blood_pressure(ref, 185, 95))
    assert len(_tasks(fhir)) == 1
    observation["component"][0]["valueQuantity"]["value"] = 190  # a correction: still one referral
    assert fhir.put(f"Observation/{observation['id']}", json=observation).status_code == 200
    assert len(_tasks(fhir)) == 1
    assert len(fhir.search(f"ServiceRequest?patient={PATIENT}").get("entry", [])) == 1


def test_an_existing_referral_suppresses_the_task(county, fhir):
    fhir.create({
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}],
        "subject": {"reference": PATIENT}, "authoredOn": "2025-06-25",
    })
    _post(fhir, _transaction(_encounter(), lambda enc: _blood_pressure(enc, 200, 120)))
    assert _tasks(fhir) == []


def test_not_a_follow_up_encounter(county, fhir):
    _post(fhir, _transaction(_encounter(type_code="inpatient-stay"), lambda enc: _blood_pressure(enc, 200, 120)))
    assert _tasks(fhir) == []


def test_a_refused_follow_up_writes_no_referral(county, fhir):
    bundle = _transaction(_encounter(), lambda enc: _blood_pressure(enc, 200, 120))
    bundle["entry"].append({"resource": {"resourceType": "Observation", "status": "no-such-status"},
                            "request": {"method": "POST", "url": "Observation"}})
    assert fhir.post("", json=bundle).status_code == 400
    assert _tasks(fhir) == []
    assert not fhir.search(f"Encounter?patient={PATIENT}").get("entry")
