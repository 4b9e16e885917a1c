"""$validate over HTTP: type level (POST) and instance level (GET, POST), ``profile`` and
``mode``; always 200 with an OperationOutcome unless the request itself is wrong.

Authentication is on: ``http`` carries a full-scope token; the scope rules (``c`` at type
level, ``r`` at instance level) and the organisation scope are tested with narrower tokens.
"""

from __future__ import annotations

from fhir_server.auth.identity import SYSTEM

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import get_token, register_client


EXAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "local" / "examples"
SD = "https://county-fhir.example.org/fhir/StructureDefinition/"


@pytest.fixture
def http(client):
    return client


def _example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def _outcome(response) -> list[dict]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


def _errors(issues: list[dict]) -> set[str]:
    return {p for i in issues if i["severity"] == "error" for p in i.get("expression", [])}


def test_type_level_with_the_resource_as_body(http):
    assert _errors(_outcome(http.post("/fhir/Patient/$validate", json=_example("county-patient-valid")))) == set()
    issues = _outcome(http.post("/fhir/Patient/$validate", json=_example("county-patient-invalid-check-digit")))
    assert _errors(issues) == {"Patient.identifier[0].value"}


def test_a_valid_resource_gets_one_information_issue(http):
    [issue] = _outcome(http.post("/fhir/Observation/$validate", json=_example("county-heart-rate-valid")))
    assert issue["severity"] == "information"


def test_type_level_with_parameters_and_a_named_profile(http):
    patient = _example("county-patient-valid")
    del patient["meta"]  # claims nothing: only the named profile applies
    del patient["birthDate"]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient}, {"name": "profile", "valueCanonical": SD + "county-patient"}]}
    assert _errors(_outcome(http.post("/fhir/Patient/$validate", json=body))) == {"Patient.birthDate"}
    assert _errors(_outcome(http.post("/fhir/Patient/$validate", json=patient))) == set()


def test_structure_errors_come_back_in_the_outcome(http):
    issues = _outcome(http.post("/fhir/Patient/$validate", json={"resourceType": "Patient", "gender": 7}))
    assert any(i["severity"] == "error" and i["code"] == "structure" for i in issues)


def _store_unclaimed_patient(server) -> str:
    """A Patient that claims no profile (so it is stored) and lacks a managing organisation."""
    patient = _example("county-patient-invalid-no-managing-organization")
    del patient["meta"]
    return server.resources.create(patient, res_id=patient["id"], identity=SYSTEM).resource["id"]


def test_instance_level_get_validates_the_stored_resource_against_a_named_profile(http, server):
    res_id = _store_unclaimed_patient(server)
    assert _errors(_outcome(http.get(f"/fhir/Patient/{res_id}/$validate"))) == set()
    issues = _outcome(http.get(f"/fhir/Patient/{res_id}/$validate", params={"profile": SD + "county-patient"}))
    assert _errors(issues) == {"Patient.managingOrganization"}


def test_instance_level_post_checks_the_next_version_and_its_id(http, server):
    res_id = _store_unclaimed_patient(server)
    next_version = _example("county-patient-valid")
    next_version["id"] = res_id
    assert _errors(_outcome(http.post(f"/fhir/Patient/{res_id}/$validate", json=next_version))) == set()
    next_version["id"] = "someone-else"
    assert _errors(_outcome(http.post(f"/fhir/Patient/{res_id}/$validate", json=next_version))) == {"id"}


def test_modes(http, server):
    res_id = _store_unclaimed_patient(server)
    [issue] = _outcome(http.get(f"/fhir/Patient/{res_id}/$validate", params={"mode": "delete"}))
    assert issue["severity"] == "information"
    broken = _example("county-patient-invalid-no-birth-date")  # claims county-patient
    only_named = {"mode": "profile", "profile": SD + "county-organization"}
    issues = _outcome(http.post("/fhir/Patient/$validate", params=only_named, json=broken))
    assert _errors(issues) == {"Patient"}  # wrong type for the named profile; the claimed one is not run
    assert http.post("/fhir/Patient/$validate", params={"mode": "profile"}, json=broken).status_code == 400


@pytest.mark.parametrize(("method", "path", "params", "status"), [
    ("POST", "/fhir/Patient/$validate", {"profile": SD + "no-such-profile"}, 400),
    ("POST", "/fhir/Patient/$validate", {"mode": "merge"}, 400),
    ("GET", "/fhir/Patient/pat-missing/$validate", {}, 404),
])
def test_bad_requests_are_refused_with_an_outcome(http, method, path, params, status):
    body = _example("county-patient-valid") if method == "POST" else None
    response = http.request(method, path, params=params, json=body)
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


def test_type_level_without_a_resource_is_400(http):
    response = http.post("/fhir/Patient/$validate", json={"resourceType": "Parameters", "parameter": [
        {"name": "mode", "valueCode": "create"}]})
    assert response.status_code == 400


def test_validate_stores_nothing(http):
    _outcome(http.post("/fhir/Patient/$validate", json=_example("county-patient-valid")))
    assert http.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 0


@pytest.mark.parametrize(("scopes", "type_level", "instance_level"), [
    ("system/Patient.c", 200, 403),  # a check before a create
    ("system/Patient.r", 403, 200),  # reads the stored resource
    ("system/Observation.cr", 403, 403),
])
def test_scopes_type_level_needs_create_and_instance_level_read(app, server, scopes, type_level, instance_level):
    res_id = _store_unclaimed_patient(server)
    client_id, secret = register_client(app, f"validate {scopes}", None, scopes)
    with TestClient(app, base_url="http://testserver") as caller:
        caller.headers["Authorization"] = f"Bearer {get_token(caller, client_id, secret)}"
        posted = caller.post("/fhir/Patient/$validate", json=_example("county-patient-valid"))
        assert posted.status_code == type_level, posted.text
        assert caller.get(f"/fhir/Patient/{res_id}/$validate").status_code == instance_level
