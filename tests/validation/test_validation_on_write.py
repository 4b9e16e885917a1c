"""Validation on write: a resource that claims a county profile and breaks it is refused with
422 on create, update, conditional update, patch and in a transaction (which then stores
nothing); FHIR_VALIDATION=warn stores it and logs, =off does not check."""

from __future__ import annotations

from fhir_server.auth.identity import SYSTEM

import copy
import json
import logging
from pathlib import Path

import pytest

from fhir_server.errors import Unprocessable
from fhir_server.server import Server

EXAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "local" / "examples"


def _example(name: str) -> dict:
    resource = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    resource.pop("id")
    return resource


def _refused(response, *paths: str) -> dict:
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    found = {p for issue in outcome["issue"] if issue["severity"] == "error" for p in issue.get("expression", [])}
    assert found == set(paths)
    return outcome


def _count(fhir, query: str) -> int:
    return fhir.search(f"{query}{'&' if '?' in query else '?'}_summary=count")["total"]


def test_a_conforming_resource_is_stored(fhir):
    created = fhir.create(_example("county-patient-valid"))
    assert created["meta"]["profile"] == ["https://county-fhir.example.org/fhir/StructureDefinition/county-patient"]


def test_create_that_breaks_the_claimed_profile_is_422_and_nothing_is_stored(fhir):
    outcome = _refused(fhir.post("Patient", json=_example("county-patient-invalid-check-digit")),
                       "Patient.identifier[0].value")
    assert "GB 11643" in outcome["issue"][0]["diagnostics"]
    assert _count(fhir, "Patient") == 0


def test_a_resource_claiming_no_county_profile_is_not_profile_checked(fhir):
    patient = _example("county-patient-invalid-check-digit")
    del patient["meta"]
    fhir.create(patient)


def test_update_that_breaks_the_profile_is_422_and_keeps_the_stored_version(fhir):
    stored = fhir.create(_example("county-patient-valid"))
    broken = copy.deepcopy(stored)
    del broken["managingOrganization"]
    _refused(fhir.put(f"Patient/{stored['id']}", json=broken), "Patient.managingOrganization")
    current = fhir.get(f"Patient/{stored['id']}").json()
    assert current["meta"]["versionId"] == "1" and "managingOrganization" in current


def test_conditional_update_that_breaks_the_profile_is_422(fhir):
    stored = fhir.create(_example("county-organization-valid"))
    broken = copy.deepcopy(stored)
    del broken["id"]
    broken["partOf"] = {"reference": "Location/loc-th-01"}
    code = stored["identifier"][0]["value"]
    _refused(fhir.put(f"Organization?identifier=urn:oid:2.16.156.10011.1.5|{code}", json=broken),
             "Organization.partOf")


def test_patch_that_breaks_the_profile_is_422(fhir):
    stored = fhir.create(_example("county-blood-pressure-valid"))
    response = fhir.patch(f"Observation/{stored['id']}", json=[{"op": "remove", "path": "/component/1"}])
    _refused(response, "Observation.component")
    assert len(fhir.get(f"Observation/{stored['id']}").json()["component"]) == 2


def test_transaction_with_one_broken_entry_stores_nothing(fhir):
    entries = [
        _example("county-organization-valid"),
        _example("county-patient-valid"),
        _example("county-blood-pressure-invalid-no-diastolic"),
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:0000000{i}-0000-4000-8000-000000000000", "resource": resource,
         "request": {"method": "POST", "url": resource["resourceType"]}}
        for i, resource in enumerate(entries)]}
    response = fhir.post("", json=bundle)
    _refused(response, "Bundle.entry[2]", "Observation.component")
    assert [_count(fhir, t) for t in ("Organization", "Patient", "Observation")] == [0, 0, 0]


@pytest.fixture
def server_in(settings, server):
    """A second Server on the same (emptied) database with another FHIR_VALIDATION mode."""
    made = []

    def make(mode: str) -> Server:
        made.append(Server(settings.model_copy(update={"validation": mode})))
        return made[-1]

    yield make
    for other in made:
        other.close()


def test_warn_mode_stores_and_logs_paths_without_values(server_in, caplog):
    warn = server_in("warn")
    patient = _example("county-patient-invalid-check-digit")
    with caplog.at_level(logging.WARNING, logger="fhir_server.validation.on_write"):
        stored = warn.resources.create(patient, identity=SYSTEM).resource
    assert warn.resources.read("Patient", stored["id"], identity=SYSTEM)["identifier"][0]["value"] == patient["identifier"][0]["value"]
    [record] = [r for r in caplog.records if r.name == "fhir_server.validation.on_write"]
    assert "Patient.identifier[0].value" in record.getMessage()
    assert patient["identifier"][0]["value"] not in record.getMessage()


def test_off_mode_does_not_check_and_enforce_refuses(server_in, server):
    off = server_in("off")
    off.resources.create(_example("county-patient-invalid-no-birth-date"), identity=SYSTEM)
    with pytest.raises(Unprocessable):
        server.resources.create(_example("county-patient-invalid-no-birth-date"), identity=SYSTEM)
