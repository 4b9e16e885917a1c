"""Patient/[id]/$everything: compartment members, shared references, filters, paging, errors."""

from __future__ import annotations

import time


def _ids(bundle: dict, mode: str | None = None) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
        if mode is None or e.get("search", {}).get("mode") == mode
    }


def _record(fhir, name: str, org_id: str) -> dict:
    """A patient with an Observation, an Encounter, a Condition and a CarePlan."""
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": name}],
                           "managingOrganization": {"reference": f"Organization/{org_id}"}})
    ref = {"reference": f"Patient/{patient['id']}"}
    made = {"Patient": patient}
    made["Encounter"] = fhir.create({
        "resourceType": "Encounter", "status": "finished", "subject": ref,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "period": {"start": "2024-03-01T09:00:00Z", "end": "2024-03-01T09:30:00Z"},
        "serviceProvider": {"reference": f"Organization/{org_id}"},
    })
    made["Observation"] = fhir.create({
        "resourceType": "Observation", "status": "final", "subject": ref,
        "code": {"coding": [{"system": "http://loinc.org", "code": "14771-0"}]},
        "effectiveDateTime": "2024-03-01T09:10:00Z",
        "valueQuantity": {"value": 6.1, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
    })
    made["Condition"] = fhir.create({
        "resourceType": "Condition", "subject": ref, "onsetDateTime": "2019-05-01",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
    })
    made["CarePlan"] = fhir.create({
        "resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": ref,
        "period": {"start": "2024-01-01"},
    })
    return made


def test_everything_returns_the_compartment_and_shared_references(fhir):
    org = fhir.create({"resourceType": "Organization", "name": "Township clinic"})
    other_org = fhir.create({"resourceType": "Organization", "name": "Unrelated clinic"})
    mine = _record(fhir, "Li", org["id"])
    theirs = _record(fhir, "Wang", other_org["id"])

    response = fhir.get(f"Patient/{mine['Patient']['id']}/$everything")
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    expected = {f"{t}/{r['id']}" for t, r in mine.items()}
    assert _ids(bundle, "match") == expected
    assert bundle["total"] == len(expected)
    assert _ids(bundle, "include") == {f"Organization/{org['id']}"}
    # the patient comes first; nothing of the other patient or their organisation
    assert bundle["entry"][0]["resource"]["id"] == mine["Patient"]["id"]
    assert not _ids(bundle) & {f"{t}/{r['id']}" for t, r in theirs.items()}
    assert f"Organization/{other_org['id']}" not in _ids(bundle)


def test_everything_post_and_type_filter(fhir):
    org = fhir.create({"resourceType": "Organization", "name": "Clinic"})
    mine = _record(fhir, "Li", org["id"])
    pid = mine["Patient"]["id"]

    bundle = fhir.search(f"Patient/{pid}/$everything?_type=Observation,Condition")
    assert _ids(bundle) == {f"Observation/{mine['Observation']['id']}", f"Condition/{mine['Condition']['id']}"}

    bundle = fhir.search(f"Patient/{pid}/$everything?_type=Encounter,Organization")
    assert _ids(bundle, "match") == {f"Encounter/{mine['Encounter']['id']}"}
    assert _ids(bundle, "include") == {f"Organization/{org['id']}"}

    response = fhir.post(f"Patient/{pid}/$everything", json={
        "resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "CarePlan"}],
    })
    assert response.status_code == 200, response.text
    assert _ids(response.json()) == {f"CarePlan/{mine['CarePlan']['id']}"}

    assert fhir.get(f"Patient/{pid}/$everything?_type=NoSuchType").status_code == 400


def test_everything_since_and_care_dates(fhir):
    org = fhir.create({"resourceType": "Organization", "name": "Clinic"})
    mine = _record(fhir, "Li", org["id"])
    pid = mine["Patient"]["id"]
    time.sleep(0.05)  # the care plan was written last, after the encounter and the observation
    cutoff = mine["CarePlan"]["meta"]["lastUpdated"]
    later = fhir.create({
        "resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "effectiveDateTime": "2025-06-01T08:00:00Z",
    })
    # _since is strictly about meta.lastUpdated; the cutoff is after everything else was written
    since = fhir.search(f"Patient/{pid}/$everything?_since={cutoff.replace('+', '%2B')}&_type=Observation,Encounter")
    assert _ids(since) == {f"Observation/{later['id']}"}
    # start/end filter care dates: the March 2024 encounter and observation, the 2024 care plan;
    # the 2019 condition and the 2025 observation are out; the patient itself is never filtered
    window = fhir.search(f"Patient/{pid}/$everything?start=2024-01-01&end=2024-12-31")
    assert _ids(window, "match") == {
        f"Patient/{pid}", f"Encounter/{mine['Encounter']['id']}",
        f"Observation/{mine['Observation']['id']}", f"CarePlan/{mine['CarePlan']['id']}",
    }
    only_end = fhir.search(f"Patient/{pid}/$everything?end=2020&_type=Condition,Observation")
    assert _ids(only_end) == {f"Condition/{mine['Condition']['id']}"}
    assert fhir.get(f"Patient/{pid}/$everything?start=yesterday").status_code == 400


def test_everything_pages_with_next_links(fhir):
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": "Zhao"}]})
    ref = {"reference": f"Patient/{patient['id']}"}
    made = {f"Patient/{patient['id']}"}
    for day in range(1, 8):
        obs = fhir.create({"resourceType": "Observation", "status": "final", "subject": ref,
                           "code": {"text": "glucose"}, "effectiveDateTime": f"2024-01-0{day}"})
        made.add(f"Observation/{obs['id']}")
    seen: set[str] = set()
    url = f"Patient/{patient['id']}/$everything?_count=3"
    pages = 0
    while url:
        bundle = fhir.search(url)
        assert bundle["total"] == 8
        page = _ids(bundle, "match")
        assert len(page) <= 3 and not page & seen
        seen |= page
        pages += 1
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0].split("/fhir/", 1)[1] if nxt else None
    assert pages == 3 and seen == made


def test_everything_unknown_and_deleted_patient(fhir):
    assert fhir.get("Patient/nobody/$everything").status_code == 404
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": "Gone"}]})
    assert fhir.delete(f"Patient/{patient['id']}").status_code == 200
    response = fhir.get(f"Patient/{patient['id']}/$everything")
    assert response.status_code == 410
    assert response.json()["resourceType"] == "OperationOutcome"


def test_everything_leaves_out_deleted_members(fhir):
    patient = fhir.create({"resourceType": "Patient"})
    obs = fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                       "subject": {"reference": f"Patient/{patient['id']}"}})
    fhir.delete(f"Observation/{obs['id']}")
    bundle = fhir.search(f"Patient/{patient['id']}/$everything")
    assert _ids(bundle) == {f"Patient/{patient['id']}"}
