"""Writes under organisation scope: what a caller may create, change and delete, and how an
out-of-scope target is answered (404 as if unknown; 403 for creating data of a stranger's
patient), over HTTP with real tokens, for single interactions and Bundle entries."""

from __future__ import annotations

import base64
import json

from fhir_server.auth.access import ACCESS_SCOPE_EXTENSION
from tests.access.conftest import PATIENTS, RESIDENT_ID, observation, patient


def test_creating_data_of_a_patient_outside_the_organisation_is_403(as_):
    village = as_("village")
    own = village.post("Observation", json=observation("new-a1", "p-a1"))
    assert own.status_code == 201, own.text
    refused = village.post("Observation", json=observation("new-b1", "p-b1"))
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert refused.json()["issue"][0]["code"] == "forbidden"
    assert as_("county").ids("Observation?subject=Patient/p-b1") == {"Observation/obs-b1"}
    # a new patient for another clinic, or for none, is refused too
    stranger = {**patient("p-a1"), "managingOrganization": {"reference": "Organization/vc-b1"}}
    stranger.pop("id")
    assert village.post("Patient", json=stranger).status_code == 403
    assert village.post("Patient", json={"resourceType": "Patient"}).status_code == 403
    mine = {**stranger, "managingOrganization": {"reference": "Organization/vc-a1"}}
    assert village.post("Patient", json=mine).status_code == 201


def test_update_patch_and_delete_of_hidden_resources_act_as_if_unknown(as_):
    village, county = as_("village"), as_("county")
    before = county.get("Observation/obs-b1").json()
    changed = {**before, "status": "amended"}
    assert village.put("Observation/obs-b1", json=changed).status_code == 404
    assert village.put("Observation/obs-b1", json=changed, headers={"If-Match": 'W/"9"'}).status_code == 404
    assert village.patch("Observation/obs-b1", json=[{"op": "replace", "path": "/status", "value": "amended"}]
                         ).status_code == 404
    deleted = village.delete("Observation/obs-b1")  # as for an unknown id: nothing to delete
    assert deleted.status_code == 200 and "Nothing to delete" in deleted.text
    assert county.get("Observation/obs-b1").json()["meta"]["versionId"] == before["meta"]["versionId"]
    # inside the scope the same interactions work
    own = village.get("Observation/obs-a1").json()
    assert village.put("Observation/obs-a1", json={**own, "status": "amended"}).status_code == 200
    assert village.delete("Observation/obs-a1").status_code == 200
    assert village.get("Observation/obs-a1").status_code == 410
    assert as_("other_village").get("Observation/obs-a1").status_code == 404  # not even 410


def test_a_patient_can_move_only_inside_the_callers_tree(as_):
    village, township = as_("village"), as_("township")
    moved = {**patient("p-a1"), "managingOrganization": {"reference": "Organization/vc-a2"}}
    assert village.put("Patient/p-a1", json=moved).status_code == 403  # vc-a2 is not below vc-a1
    assert township.put("Patient/p-a1", json=moved).status_code == 200  # both below th-a
    assert village.get("Patient/p-a1").status_code == 404
    assert as_("village").get("Observation/obs-a1").status_code == 404  # the record follows the patient
    assert township.put("Patient/p-a1", json={**moved, "managingOrganization": {
        "reference": "Organization/vc-b1"}}).status_code == 403


def test_conditional_interactions_match_only_inside_the_scope(as_):
    village, county = as_("village"), as_("county")
    b1_number = PATIENTS["p-b1"][3]
    # conditional update: the other village's patient is not found, so the body is a create,
    # and a create for another clinic's patient is refused; p-b1 is untouched
    body = {**patient("p-b1"), "gender": "male"}
    body.pop("id")
    response = village.put(f"Patient?identifier={RESIDENT_ID}|{b1_number}", json=body)
    assert response.status_code == 403
    assert county.get("Patient/p-b1").json()["gender"] == "female"
    # a match inside the scope is updated
    a1_number = PATIENTS["p-a1"][3]
    own = {**patient("p-a1"), "gender": "male"}
    own.pop("id")
    assert village.put(f"Patient?identifier={RESIDENT_ID}|{a1_number}", json=own).status_code == 200
    # conditional create: If-None-Exist does not see the hidden observation
    created = village.post("Observation", json=observation("x", "p-a1"),
                           headers={"If-None-Exist": "subject=Patient/p-b1"})
    assert created.status_code == 201
    # conditional delete: nothing of p-b1 is found, nothing is deleted
    assert village.delete("Observation?subject=Patient/p-b1").status_code == 200
    assert county.ids("Observation?subject=Patient/p-b1") == {"Observation/obs-b1"}
    assert village.delete("Condition?subject=Patient/p-a1").status_code == 200
    assert county.get("Condition/cond-a1").status_code == 410


def _bundle(kind: str, *entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_every_transaction_entry_is_checked_and_a_refusal_rolls_back_everything(as_):
    village, county = as_("village"), as_("county")
    good = {"resource": observation("t-a1", "p-a1"), "request": {"method": "POST", "url": "Observation"}}
    for bad, status in (
        ({"resource": observation("t-b1", "p-b1"), "request": {"method": "POST", "url": "Observation"}}, "403"),
        ({"request": {"method": "GET", "url": "Patient/p-b1"}}, "404"),
        ({"request": {"method": "GET", "url": "Observation/obs-b1/_history/1"}}, "404"),
        ({"resource": {**county.get("Observation/obs-b1").json(), "status": "amended"},
          "request": {"method": "PUT", "url": "Observation/obs-b1"}}, "404"),
        ({"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                       "data": base64.b64encode(json.dumps(
                           [{"op": "replace", "path": "/status", "value": "amended"}]).encode()).decode()},
          "request": {"method": "PATCH", "url": "Observation/obs-b1"}}, "404"),
    ):
        response = village.post("", json=_bundle("transaction", good, bad))
        assert str(response.status_code) == status, (bad, response.text)
        assert county.ids("Observation?subject=Patient/p-a1") == {"Observation/obs-a1"}  # rolled back
    # a search entry sees the scope; a conditional reference cannot resolve to a hidden patient
    ok = village.post("", json=_bundle("transaction", good, {"request": {"method": "GET", "url": "Patient"}}))
    assert ok.status_code == 200, ok.text
    found = ok.json()["entry"][1]["resource"]
    assert [e["resource"]["id"] for e in found["entry"]] == ["p-a1"]
    hidden_ref = {**observation("t2", "p-a1"),
                  "subject": {"reference": f"Patient?identifier={RESIDENT_ID}|{PATIENTS['p-b1'][3]}"}}
    response = village.post("", json=_bundle("transaction", {
        "resource": hidden_ref, "request": {"method": "POST", "url": "Observation"}}))
    assert response.status_code == 404


def test_batch_entries_succeed_or_fail_one_by_one(as_):
    village = as_("village")
    response = village.post("", json=_bundle(
        "batch",
        {"request": {"method": "GET", "url": "Patient/p-a1"}},
        {"request": {"method": "GET", "url": "Patient/p-b1"}},
        {"resource": observation("b-b1", "p-b1"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": observation("b-a1", "p-a1"), "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": "Observation?subject=Patient/p-b1"}},
    ))
    assert response.status_code == 200
    statuses = [e["response"]["status"][:3] for e in response.json()["entry"]]
    assert statuses == ["200", "404", "403", "201", "204"]
    assert as_("county").ids("Observation?subject=Patient/p-b1") == {"Observation/obs-b1"}


def test_the_lab_writes_results_for_the_county_but_reads_nothing(as_):
    lab = as_("lab")
    created = lab.post("Observation", json=observation("lab-1", "p-b1"))
    assert created.status_code == 201, created.text
    report = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "血糖"},
              "subject": {"reference": "Patient/p-a2"}, "result": [{"reference": f"Observation/{created.json()['id']}"}]}
    assert lab.post("DiagnosticReport", json=report).status_code == 201
    for path in ("Patient/p-b1", "Patient", f"Observation/{created.json()['id']}", "Observation",
                 "Observation/_history", "Patient/p-b1/$everything", "Observation/$lastn"):
        assert lab.get(path).status_code == 403, path
    assert lab.put("Patient/p-b1", json=patient("p-b1")).status_code == 403


def test_an_active_referral_opens_the_patient_to_the_receiving_organisation(as_):
    other_village, township = as_("other_village"), as_("township")
    referral = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                "subject": {"reference": "Patient/p-b1"},
                "requester": {"reference": "Organization/vc-b1"}, "performer": [{"reference": "Organization/th-a"}]}
    assert township.post("ServiceRequest", json=referral).status_code == 403  # not th-a's patient yet
    created = other_village.post("ServiceRequest", json=referral)
    assert created.status_code == 201
    assert township.ids("Patient") == {"Patient/p-a1", "Patient/p-a2", "Patient/p-b1"}
    assert township.get("Observation/obs-b1").status_code == 200
    assert as_("village").get("Patient/p-b1").status_code == 404  # vc-a1 is below th-a, not above
    done = {**created.json(), "status": "completed"}
    assert township.put(f"ServiceRequest/{done['id']}", json=done).status_code == 200
    assert township.get("Patient/p-b1").status_code == 404


def test_organisations_can_only_be_rearranged_from_above(as_):
    village, township, county = as_("village"), as_("township"), as_("county")
    hospital = county.get("Organization/hospital").json()
    vc_a1 = county.get("Organization/vc-a1").json()
    # nobody grafts a stranger's subtree under itself, or itself elsewhere
    assert village.put("Organization/hospital", json={
        **hospital, "partOf": {"reference": "Organization/vc-a1"}}).status_code == 403
    assert village.put("Organization/vc-a1", json={
        **vc_a1, "partOf": {"reference": "Organization/th-b"}}).status_code == 403
    assert village.put("Organization/vc-a1", json={
        **vc_a1, "extension": [{"url": ACCESS_SCOPE_EXTENSION, "valueCode": "county"}]}).status_code == 403
    assert village.put("Organization/vc-a1", json={**vc_a1, "name": "桃溪村卫生室（新）"}).status_code == 200
    assert village.post("Organization", json={"resourceType": "Organization", "name": "x"}).status_code == 403
    child = {"resourceType": "Organization", "name": "分室", "partOf": {"reference": "Organization/vc-a1"}}
    assert village.post("Organization", json=child).status_code == 201
    # a cycle is refused for everyone
    th_a = county.get("Organization/th-a").json()
    assert county.put("Organization/th-a", json={**th_a, "partOf": {"reference": "Organization/vc-a1"}}
                      ).status_code == 422
    # the township moves one of its villages to the other township? th-b is not below th-a
    assert township.put("Organization/vc-a2", json={
        **county.get("Organization/vc-a2").json(), "partOf": {"reference": "Organization/th-b"}}).status_code == 403
    # the hospital can, and th-b then sees the moved village's patient
    assert county.put("Organization/vc-a2", json={
        **county.get("Organization/vc-a2").json(), "partOf": {"reference": "Organization/th-b"}}).status_code == 200
    assert township.get("Patient/p-a2").status_code == 404
    assert as_("other_village").get("Patient/p-a2").status_code == 404
