"""$reindex: a SearchParameter added after the data applies to the old data once reindexed."""

from __future__ import annotations

import logging
import uuid

import pytest

from fhir_server.auth.identity import SYSTEM

DISTRICT = {
    "resourceType": "SearchParameter",
    "url": "http://example.org/SearchParameter/patient-district",
    "name": "PatientDistrict",
    "status": "active",
    "description": "The village (address.district) of a patient",
    "code": "village",
    "base": ["Patient"],
    "type": "string",
    "expression": "Patient.address.district",
}


def _patient(fhir, village: str) -> str:
    return fhir.create({"resourceType": "Patient", "address": [{"district": village, "city": "Anxian"}]})["id"]


def _params(response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Parameters"
    return {p["name"]: p.get("valueInteger", p.get("valueDecimal", p.get("valueString", p.get("resource"))))
            for p in body["parameter"]}


@pytest.fixture(autouse=True)
def _forget_added_parameters(server):
    """The server (and its registry) lives for the whole session: unregister what a test added."""
    before = {p.url for p in server.registry.params_for("Patient").values()}
    yield
    for url in {p.url for p in server.registry.params_for("Patient").values()} - before:
        server.registry.remove(url)


@pytest.fixture
def batch_size(server):
    before = server.settings.reindex_batch_size
    server.settings.reindex_batch_size = 2
    yield 2
    server.settings.reindex_batch_size = before


def test_reindex_applies_a_new_search_parameter_to_old_data(fhir, server, batch_size, caplog):
    old = [_patient(fhir, "Shuimo") for _ in range(3)] + [_patient(fhir, "Huilong")]
    fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    assert fhir.post("SearchParameter", json=DISTRICT).status_code == 201

    assert fhir.search_ids("Patient?village=Shuimo") == []  # old data: not indexed yet
    new = _patient(fhir, "Shuimo")  # written after the parameter: indexed at once

    server.audit.flush()
    audit_events = len(server.search.search(server.search.parse("AuditEvent", [("_count", "100")]),
                                            identity=SYSTEM).matches)
    assert audit_events >= 1  # the patient creates' (records a flush took together share one)
    with caplog.at_level(logging.INFO, logger="fhir_server.operations.reindex"):
        report = _params(fhir.post("$reindex"))
    # 5 patients, 1 observation, 1 SearchParameter and the AuditEvents, in batches of 2
    assert report["resources"] == 7 + audit_events
    batches = (7 + audit_events + 1) // 2
    assert report["batches"] == batches
    assert report["seconds"] >= 0
    assert report["outcome"]["resourceType"] == "OperationOutcome"
    assert sum(": batch " in r.getMessage() for r in caplog.records) == batches

    assert fhir.search_ids("Patient?village=Shuimo") == sorted(old[:3] + [new])
    assert fhir.search_ids("Patient?village=Huilong") == [old[3]]
    # other parameters are intact after the index rows were replaced
    assert fhir.search_ids("Patient?address-city=Anxian") == sorted(old + [new])


def test_new_writes_are_searchable_before_any_reindex(fhir):
    code = f"village{uuid.uuid4().hex[:8]}"  # a parameter this database has never had a key for
    _patient(fhir, "Shuimo")
    assert fhir.post("SearchParameter", json={**DISTRICT, "code": code, "url": f"{DISTRICT['url']}-{code}"}).status_code == 201
    new = _patient(fhir, "Shuimo")
    assert fhir.search_ids(f"Patient?{code}=Shuimo") == [new]


def test_reindex_type_level_and_type_parameter(fhir, server, batch_size):
    old = _patient(fhir, "Shuimo")
    fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    fhir.post("SearchParameter", json={**DISTRICT, "url": "http://example.org/SearchParameter/district-2"})
    assert fhir.search_ids("Patient?village=Shuimo") == []

    report = _params(fhir.post("Patient/$reindex"))
    assert report["resources"] == 1 and report["types"] == "Patient"
    assert fhir.search_ids("Patient?village=Shuimo") == [old]

    report = _params(fhir.post("$reindex", json={"resourceType": "Parameters", "parameter": [
        {"name": "type", "valueString": "Observation,Patient"}]}))
    assert report["resources"] == 2
    assert _params(fhir.post("$reindex?_type=Encounter"))["resources"] == 0
    assert fhir.post("$reindex?_type=Nope").status_code == 400
    assert fhir.post("Nope/$reindex").status_code == 404


def test_reindex_instance_level(fhir, server):
    first, second = _patient(fhir, "Shuimo"), _patient(fhir, "Shuimo")
    fhir.post("SearchParameter", json={**DISTRICT, "url": "http://example.org/SearchParameter/district-3"})
    report = _params(fhir.post(f"Patient/{first}/$reindex"))
    assert report["resources"] == 1
    assert fhir.search_ids("Patient?village=Shuimo") == [first]
    assert fhir.post("Patient/nobody/$reindex").status_code == 404
    fhir.delete(f"Patient/{second}")
    assert fhir.post(f"Patient/{second}/$reindex").status_code == 410


def test_deleted_or_retired_search_parameter_stops_applying(fhir, server):
    created = fhir.post("SearchParameter", json={**DISTRICT, "url": "http://example.org/SearchParameter/district-4"})
    assert server.registry.get("Patient", "village") is not None
    retired = {**created.json(), "status": "retired"}
    assert fhir.put(f"SearchParameter/{retired['id']}", json=retired).status_code == 200
    assert server.registry.get("Patient", "village") is None
    revived = {**retired, "status": "active"}
    fhir.put(f"SearchParameter/{retired['id']}", json=revived)
    assert server.registry.get("Patient", "village") is not None
    fhir.delete(f"SearchParameter/{retired['id']}")
    assert server.registry.get("Patient", "village") is None
    # the search then reports the parameter as unknown instead of matching nothing silently
    bundle = fhir.search("Patient?village=Shuimo")
    assert bundle["entry"][-1]["search"]["mode"] == "outcome"
