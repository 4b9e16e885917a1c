"""Batch and transaction Bundles through ``POST [base]``."""

from __future__ import annotations

import base64
import json

import pytest

ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"  # resident identity card numbers
ID_CARD = "110105194912310021"
BY_CARD = f"identifier={ID_SYSTEM}|{ID_CARD}"


# ---- helpers ----------------------------------------------------------------------------------
def bundle(kind: str, *entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict, full_url: str | None = None, if_none_exist: str | None = None) -> dict:
    request = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    entry = {"resource": resource, "request": request}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def call(method: str, url: str, resource: dict | None = None, full_url: str | None = None,
         **request) -> dict:
    entry: dict = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        entry["resource"] = resource
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def patient(family="张", given="三", card=ID_CARD) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": ID_SYSTEM, "value": card}],
        "name": [{"text": f"{family}{given}", "family": family, "given": [given]}],
        "gender": "male",
        "birthDate": "1949-12-31",
    }


def observation(subject: str, encounter: str | None = None) -> dict:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}], "text": "收缩压"},
        "subject": {"reference": subject},
        "valueQuantity": {"value": 142, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                          "code": "mm[Hg]"},
    }
    if encounter:
        obs["encounter"] = {"reference": encounter}
    return obs


def encounter(subject: str) -> dict:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": subject},
    }


def send(fhir, body: dict, **kw):
    return fhir.post("/", json=body, **kw)


def statuses(response) -> list[str]:
    return [e["response"]["status"] for e in response.json()["entry"]]


def entries(response) -> list[dict]:
    return response.json()["entry"]


def assert_outcome(response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    text = json.dumps(outcome, ensure_ascii=False)
    for fragment in fragments:
        assert fragment in text, text


# ---- transactions -----------------------------------------------------------------------------
def test_transaction_stores_linked_resources_and_rewrites_urn_uuid_references(fhir):
    pat = "urn:uuid:8f2c1d7e-0000-4000-8000-000000000001"
    enc = "urn:uuid:8f2c1d7e-0000-4000-8000-000000000002"
    obs = observation(pat, enc)
    obs["extension"] = [{"url": "http://example.org/fhir/StructureDefinition/recorded-at",
                         "valueReference": {"reference": enc}}]
    response = send(fhir, bundle(
        "transaction", post(patient(), pat), post(encounter(pat), enc), post(obs),
    ))

    assert response.status_code == 200, response.text
    assert response.json()["type"] == "transaction-response"
    assert statuses(response) == ["201 Created"] * 3
    pat_entry, enc_entry, obs_entry = entries(response)
    pid, eid = pat_entry["resource"]["id"], enc_entry["resource"]["id"]
    assert pat_entry["response"]["location"] == f"Patient/{pid}/_history/1"
    assert pat_entry["response"]["etag"] == 'W/"1"'
    assert pat_entry["response"]["lastModified"] == pat_entry["resource"]["meta"]["lastUpdated"]
    assert pat_entry["fullUrl"].endswith(f"/Patient/{pid}")

    stored = fhir.get(f"Observation/{obs_entry['resource']['id']}").json()
    assert stored["subject"]["reference"] == f"Patient/{pid}"
    assert stored["encounter"]["reference"] == f"Encounter/{eid}"
    assert stored["extension"][0]["valueReference"]["reference"] == f"Encounter/{eid}"
    assert fhir.get(f"Encounter/{eid}").json()["subject"]["reference"] == f"Patient/{pid}"
    assert fhir.get(f"Patient/{pid}").json()["name"][0]["text"] == "张三"
    assert fhir.search_ids(f"Observation?subject=Patient/{pid}") == [stored["id"]]


@pytest.mark.parametrize("base", ["/fhir", "/fhir/"])
def test_a_transaction_is_posted_to_the_base_url_itself(fhir, base):
    """POST [base] is answered at the base URL as written, without a redirect a client would
    have to follow with its body."""
    response = fhir.http.post(base, json=bundle("transaction", post(patient())), follow_redirects=False)
    assert response.status_code == 200, response.text
    assert statuses(response) == ["201 Created"]


def test_transaction_response_entries_keep_request_order(fhir):
    existing = fhir.create(patient(card="1"))
    response = send(fhir, bundle(
        "transaction",
        call("GET", f"Patient?identifier={ID_SYSTEM}|"),
        post(patient(card="2")),
        call("DELETE", f"Patient/{existing['id']}"),
    ))

    assert response.status_code == 200, response.text
    assert statuses(response) == ["200 OK", "201 Created", "204 No Content"]
    search, created, _ = entries(response)
    assert [e["resource"]["id"] for e in search["resource"]["entry"]] == [created["resource"]["id"]]


def test_transaction_with_an_invalid_entry_stores_nothing(fhir):
    broken = {"resourceType": "Observation", "status": "final",
              "subject": {"reference": "urn:uuid:p"}}
    response = send(fhir, bundle("transaction", post(patient(), "urn:uuid:p"), post(broken)))

    assert_outcome(response, 400, "Bundle.entry[1]", "Observation.code")
    assert fhir.search_ids("Patient") == []
    assert fhir.search_ids("Observation") == []


def test_transaction_deletes_before_it_creates(fhir):
    old = fhir.create(patient())
    response = send(fhir, bundle(
        "transaction",
        post(patient(given="四"), if_none_exist=BY_CARD),
        call("DELETE", f"Patient?{BY_CARD}"),
    ))

    assert response.status_code == 200, response.text
    assert statuses(response) == ["201 Created", "204 No Content"]
    new_id = entries(response)[0]["resource"]["id"]
    assert new_id != old["id"]
    assert fhir.search_ids(f"Patient?{BY_CARD}") == [new_id]
    assert fhir.get(f"Patient/{old['id']}").status_code == 410


def test_conditional_create_in_transaction_returns_the_existing_resource_and_links_to_it(fhir):
    existing = fhir.create(patient())
    response = send(fhir, bundle(
        "transaction",
        post(patient(), "urn:uuid:p", if_none_exist=BY_CARD),
        post(observation("urn:uuid:p")),
    ))

    assert response.status_code == 200, response.text
    assert statuses(response) == ["200 OK", "201 Created"]
    pat_entry, obs_entry = entries(response)
    assert pat_entry["resource"]["id"] == existing["id"]
    assert obs_entry["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"
    assert fhir.search_ids("Patient") == [existing["id"]]


def test_conditional_update_full_url_resolves_to_the_matched_resource(fhir):
    existing = fhir.create(patient())
    response = send(fhir, bundle(
        "transaction",
        post(observation("urn:uuid:p")),
        call("PUT", f"Patient?{BY_CARD}", {**patient(), "gender": "female"}, "urn:uuid:p"),
    ))

    assert response.status_code == 200, response.text
    assert statuses(response) == ["201 Created", "200 OK"]
    obs_entry, pat_entry = entries(response)
    assert pat_entry["resource"]["id"] == existing["id"]
    assert pat_entry["resource"]["gender"] == "female"
    assert obs_entry["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"


def test_conditional_reference_resolves_to_the_one_matching_resource(fhir):
    existing = fhir.create(patient())
    response = send(fhir, bundle("transaction", post(observation(f"Patient?{BY_CARD}"))))

    assert response.status_code == 200, response.text
    stored = fhir.get(f"Observation/{entries(response)[0]['resource']['id']}").json()
    assert stored["subject"]["reference"] == f"Patient/{existing['id']}"


def test_conditional_reference_resolves_to_a_resource_created_in_the_same_transaction(fhir):
    response = send(fhir, bundle(
        "transaction",
        post(observation(f"Patient?{BY_CARD}")),
        post(patient(), if_none_exist=BY_CARD),
    ))

    assert response.status_code == 200, response.text
    obs_entry, pat_entry = entries(response)
    assert obs_entry["resource"]["subject"]["reference"] == f"Patient/{pat_entry['resource']['id']}"


def test_conditional_reference_without_a_match_fails_the_transaction(fhir):
    obs = observation(f"Patient?identifier={ID_SYSTEM}|nobody")
    response = send(fhir, bundle("transaction", post(patient(card="1")), post(obs)))

    assert_outcome(response, 404, "Bundle.entry[1]", "matches no resource")
    assert fhir.search_ids("Patient") == []


def test_conditional_reference_with_several_matches_fails_the_transaction(fhir):
    fhir.create(patient())
    fhir.create(patient(given="四"))
    response = send(fhir, bundle("transaction", post(observation(f"Patient?{BY_CARD}"))))

    assert_outcome(response, 412, "Bundle.entry[0]")
    assert fhir.search_ids("Observation") == []


def test_unresolvable_urn_uuid_reference_fails_the_transaction(fhir):
    response = send(fhir, bundle("transaction", post(observation("urn:uuid:not-in-this-bundle"))))
    assert_outcome(response, 400, "Bundle.entry[0]", "urn:uuid:not-in-this-bundle")


def test_put_with_a_stale_if_match_fails_with_412_and_rolls_back(fhir):
    current = fhir.create(patient())
    changed = {**current, "gender": "female"}
    assert fhir.put(f"Patient/{current['id']}", json=changed).status_code == 200  # version 2

    stale = {**changed, "birthDate": "1950-01-01"}
    response = send(fhir, bundle(
        "transaction",
        post(patient(card="999")),
        call("PUT", f"Patient/{current['id']}", stale, ifMatch='W/"1"'),
    ))

    assert_outcome(response, 412, "Bundle.entry[1]")
    assert fhir.search_ids(f"Patient?identifier={ID_SYSTEM}|999") == []
    after = fhir.get(f"Patient/{current['id']}").json()
    assert after["meta"]["versionId"] == "2"
    assert after["birthDate"] == "1949-12-31"


def test_put_entries_update_create_with_the_client_id_and_update_conditionally(fhir):
    current = fhir.create(patient())
    response = send(fhir, bundle(
        "transaction",
        call("PUT", f"Patient/{current['id']}", {**current, "gender": "female"}, ifMatch='W/"1"'),
        call("PUT", "Patient/chosen-id", {**patient(card="2"), "id": "chosen-id"}),
        call("PUT", f"Patient?identifier={ID_SYSTEM}|3", patient(card="3")),
    ))

    assert response.status_code == 200, response.text
    assert statuses(response) == ["200 OK", "201 Created", "201 Created"]
    location = entries(response)[0]["response"]["location"]
    assert location == f"Patient/{current['id']}/_history/2"
    assert fhir.get("Patient/chosen-id").status_code == 200
    assert len(fhir.search_ids(f"Patient?identifier={ID_SYSTEM}|3")) == 1


def test_get_entries_see_the_writes_of_the_same_transaction(fhir):
    response = send(fhir, bundle(
        "transaction",
        call("GET", f"Patient?{BY_CARD}"),
        call("GET", "Patient/zhang-san"),
        call("GET", "Patient/zhang-san/_history/1"),
        call("PUT", "Patient/zhang-san", {**patient(), "id": "zhang-san"}),
    ))

    assert response.status_code == 200, response.text
    search, read, vread, _ = entries(response)
    assert [e["resource"]["id"] for e in search["resource"]["entry"]] == ["zhang-san"]
    assert read["resource"]["name"][0]["text"] == "张三"
    assert vread["resource"]["meta"]["versionId"] == "1"
    last_updated = read["resource"]["meta"]["lastUpdated"]
    assert read["response"] == {"status": "200 OK", "etag": 'W/"1"', "lastModified": last_updated}


def test_patch_entry_applies_a_json_patch_binary(fhir):
    current = fhir.create(patient())
    ops = [{"op": "replace", "path": "/gender", "value": "female"}]
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
              "data": base64.b64encode(json.dumps(ops).encode()).decode()}
    response = send(fhir, bundle("transaction", call("PATCH", f"Patient/{current['id']}", binary)))

    assert response.status_code == 200, response.text
    assert statuses(response) == ["200 OK"]
    assert fhir.get(f"Patient/{current['id']}").json()["gender"] == "female"


def test_fhirpath_patch_entry_is_unprocessable(fhir):
    current = fhir.create(patient())
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": []}]}
    patch = call("PATCH", f"Patient/{current['id']}", parameters)
    response = send(fhir, bundle("transaction", patch))
    assert_outcome(response, 422, "Bundle.entry[0]", "FHIRPath Patch")


def test_conditional_delete_of_several_matches_fails_with_412(fhir):
    fhir.create(patient())
    fhir.create(patient(given="四"))
    response = send(fhir, bundle("transaction", call("DELETE", f"Patient?{BY_CARD}")))

    assert_outcome(response, 412, "Bundle.entry[0]")
    assert len(fhir.search_ids("Patient")) == 2


def test_empty_transaction_answers_an_empty_response_bundle(fhir):
    response = send(fhir, {"resourceType": "Bundle", "type": "transaction"})
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "transaction-response"
    assert "entry" not in response.json()


# ---- Prefer -----------------------------------------------------------------------------------
def test_prefer_return_minimal_leaves_out_the_resources(fhir):
    response = send(fhir, bundle("transaction", post(patient())),
                    headers={"Prefer": "return=minimal"})

    assert response.status_code == 200, response.text
    entry = entries(response)[0]
    assert "resource" not in entry
    assert entry["response"]["status"] == "201 Created"
    assert entry["response"]["location"].startswith("Patient/")


def test_prefer_return_operation_outcome_puts_an_outcome_in_each_response(fhir):
    response = send(fhir, bundle("transaction", post(patient())),
                    headers={"Prefer": "return=OperationOutcome"})

    entry = entries(response)[0]
    assert "resource" not in entry
    assert entry["response"]["outcome"]["resourceType"] == "OperationOutcome"


# ---- batch ------------------------------------------------------------------------------------
def test_batch_reports_each_entry_and_keeps_the_successful_ones(fhir):
    broken = {"resourceType": "Observation", "status": "final"}
    response = send(fhir, bundle(
        "batch", post(patient()), post(broken), call("GET", "Patient/nobody"),
    ))

    assert response.status_code == 200, response.text
    assert response.json()["type"] == "batch-response"
    assert statuses(response) == ["201 Created", "400 Bad Request", "404 Not Found"]
    outcome = entries(response)[1]["response"]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Bundle.entry[1]" in outcome["issue"][0]["diagnostics"]
    assert len(fhir.search_ids("Patient")) == 1


def test_batch_stores_urn_uuid_references_as_they_are(fhir):
    response = send(fhir, bundle(
        "batch", post(patient(), "urn:uuid:p"), post(observation("urn:uuid:p")),
    ))

    assert statuses(response) == ["201 Created", "201 Created"]
    assert entries(response)[1]["resource"]["subject"]["reference"] == "urn:uuid:p"


# ---- malformed Bundles --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param(patient(), "Bundle", id="not-a-bundle"),
        pytest.param(bundle("collection", post(patient())), "Bundle.type", id="wrong-type"),
        pytest.param(bundle("transaction", post(patient()), {"resource": patient()}),
                     "Bundle.entry[1]", id="missing-request"),
        pytest.param(bundle("transaction", post(patient(), "urn:uuid:a"),
                            post(patient(card="2"), "urn:uuid:a")),
                     "urn:uuid:a", id="duplicate-fullUrl"),
        pytest.param(bundle("transaction", call("POST", "Observation", patient())),
                     "Bundle.entry[0]", id="type-mismatch"),
        pytest.param(bundle("transaction", call("DELETE", "Patient")),
                     "Bundle.entry[0]", id="delete-without-target"),
    ],
)
def test_malformed_bundle_is_rejected_with_400(fhir, body, fragment):
    assert_outcome(send(fhir, body), 400, fragment)
    assert fhir.search_ids("Patient") == []


def test_bundle_with_too_many_entries_is_refused(fhir, server, monkeypatch):
    monkeypatch.setattr(server.settings, "max_bundle_entries", 2)
    response = send(fhir, bundle("batch", *(post(patient(card=str(n))) for n in range(3))))

    assert_outcome(response, 413, "limit")
    assert fhir.search_ids("Patient") == []
