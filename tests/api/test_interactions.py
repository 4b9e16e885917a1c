"""The RESTful interactions over HTTP: create, read, vread, update, patch, delete, conditionals."""

from __future__ import annotations

from urllib.parse import quote

RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"


def patient(**extra) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": RESIDENT_ID, "value": "11010519491231002X"}],
        "name": [{"family": "王", "given": ["秀英"], "text": "王秀英"}],
        "gender": "female",
        "birthDate": "1949-12-31",
        **extra,
    }


# ---- create / read / vread ---------------------------------------------------------------
def test_create_assigns_id_version_and_location(fhir):
    response = fhir.post("Patient", json=patient())
    assert response.status_code == 201
    body = response.json()
    assert body["id"] and body["meta"]["versionId"] == "1"
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert body["name"][0]["text"] == "王秀英"


def test_read_returns_the_stored_resource_with_etag(fhir):
    created = fhir.create(patient())
    response = fhir.get(f"Patient/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Content-Type"].startswith("application/fhir+json")


def test_read_of_unknown_id_is_404_operation_outcome(fhir):
    response = fhir.get("Patient/does-not-exist")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "not-found"


def test_unknown_resource_type_is_404(fhir):
    response = fhir.get("Spaceship/1")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_vread_returns_each_version(fhir):
    created = fhir.create(patient())
    fhir.put(f"Patient/{created['id']}", json={**created, "gender": "male"})
    v1 = fhir.get(f"Patient/{created['id']}/_history/1").json()
    v2 = fhir.get(f"Patient/{created['id']}/_history/2").json()
    assert (v1["gender"], v2["gender"]) == ("female", "male")
    assert fhir.get(f"Patient/{created['id']}/_history/3").status_code == 404
    assert fhir.get(f"Patient/{created['id']}/_history/x").status_code == 404


def test_read_with_matching_if_none_match_is_304(fhir):
    created = fhir.create(patient())
    response = fhir.get(f"Patient/{created['id']}", headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 304


# ---- update ------------------------------------------------------------------------------
def test_update_creates_a_new_version(fhir):
    created = fhir.create(patient())
    response = fhir.put(f"Patient/{created['id']}", json={**created, "gender": "male"})
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert response.headers["ETag"] == 'W/"2"'


def test_update_with_client_id_creates(fhir):
    response = fhir.put("Patient/pat-001", json={**patient(), "id": "pat-001"})
    assert response.status_code == 201
    assert fhir.get("Patient/pat-001").json()["id"] == "pat-001"


def test_update_with_unchanged_content_keeps_the_version(fhir):
    created = fhir.create(patient())
    response = fhir.put(f"Patient/{created['id']}", json=created)
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "1"


def test_update_with_mismatched_id_is_400(fhir):
    created = fhir.create(patient())
    response = fhir.put(f"Patient/{created['id']}", json={**created, "id": "other"})
    assert response.status_code == 400


def test_update_if_match_wrong_version_is_412(fhir):
    created = fhir.create(patient())
    response = fhir.put(
        f"Patient/{created['id']}", json={**created, "gender": "male"}, headers={"If-Match": 'W/"7"'}
    )
    assert response.status_code == 412
    assert fhir.get(f"Patient/{created['id']}").json()["gender"] == "female"


def test_update_if_match_current_version_succeeds(fhir):
    created = fhir.create(patient())
    response = fhir.put(
        f"Patient/{created['id']}", json={**created, "gender": "male"}, headers={"If-Match": 'W/"1"'}
    )
    assert response.status_code == 200


# ---- delete ------------------------------------------------------------------------------
def test_delete_then_read_is_410_and_history_keeps_it(fhir):
    created = fhir.create(patient())
    assert fhir.delete(f"Patient/{created['id']}").status_code == 200
    response = fhir.get(f"Patient/{created['id']}")
    assert response.status_code == 410
    assert response.json()["issue"][0]["code"] == "deleted"
    history = fhir.get(f"Patient/{created['id']}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]


def test_delete_of_unknown_resource_is_not_an_error(fhir):
    assert fhir.delete("Patient/never-existed").status_code == 200


def test_update_after_delete_revives_the_resource(fhir):
    created = fhir.create(patient())
    fhir.delete(f"Patient/{created['id']}")
    response = fhir.put(f"Patient/{created['id']}", json=created)
    assert response.status_code == 201
    assert response.json()["meta"]["versionId"] == "3"


# ---- conditional interactions ------------------------------------------------------------
def test_conditional_create_returns_the_existing_match(fhir):
    criteria = {"If-None-Exist": f"identifier={RESIDENT_ID}|11010519491231002X"}
    first = fhir.post("Patient", json=patient(), headers=criteria)
    second = fhir.post("Patient", json=patient(), headers=criteria)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert len(fhir.search_ids("Patient")) == 1


def test_conditional_create_with_several_matches_is_412(fhir):
    fhir.create(patient())
    fhir.create(patient())
    # header values are ASCII: criteria with Chinese text are percent-encoded
    response = fhir.post("Patient", json=patient(), headers={"If-None-Exist": f"family={quote('王')}"})
    assert response.status_code == 412


def test_conditional_create_with_unknown_parameter_is_400(fhir):
    response = fhir.post("Patient", json=patient(), headers={"If-None-Exist": "nonsense=1"})
    assert response.status_code == 400


def test_conditional_update_updates_the_match_or_creates(fhir):
    query = f"Patient?identifier={RESIDENT_ID}|11010519491231002X"
    created = fhir.put(query, json=patient())
    assert created.status_code == 201
    updated = fhir.put(query, json=patient(gender="unknown"))
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["meta"]["versionId"] == "2"


def test_conditional_delete_deletes_the_single_match(fhir):
    created = fhir.create(patient())
    response = fhir.delete(f"Patient?identifier={RESIDENT_ID}|11010519491231002X")
    assert response.status_code == 200
    assert fhir.get(f"Patient/{created['id']}").status_code == 410


def test_conditional_delete_with_several_matches_is_412(fhir):
    fhir.create(patient())
    fhir.create(patient())
    assert fhir.delete("Patient?family=王").status_code == 412


# ---- patch -------------------------------------------------------------------------------
def test_json_patch_changes_the_resource(fhir):
    created = fhir.create(patient())
    response = fhir.patch(
        f"Patient/{created['id']}", json=[{"op": "replace", "path": "/gender", "value": "male"}]
    )
    assert response.status_code == 200
    assert response.json()["gender"] == "male"
    assert response.json()["meta"]["versionId"] == "2"


def test_json_patch_that_breaks_the_resource_is_refused(fhir):
    created = fhir.create(patient())
    response = fhir.patch(
        f"Patient/{created['id']}", json=[{"op": "replace", "path": "/birthDate", "value": "yesterday"}]
    )
    assert response.status_code == 400
    assert fhir.get(f"Patient/{created['id']}").json()["birthDate"] == "1949-12-31"


def test_json_patch_with_failing_test_op_is_422(fhir):
    created = fhir.create(patient())
    response = fhir.patch(
        f"Patient/{created['id']}", json=[{"op": "test", "path": "/gender", "value": "male"}]
    )
    assert response.status_code == 422


# ---- Prefer ------------------------------------------------------------------------------
def test_prefer_return_minimal_has_no_body(fhir):
    response = fhir.post("Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert response.status_code == 201
    assert response.content == b""
    assert "Location" in response.headers


def test_prefer_return_operation_outcome(fhir):
    response = fhir.post("Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert response.status_code == 201
    assert response.json()["resourceType"] == "OperationOutcome"


# ---- history -----------------------------------------------------------------------------
def test_type_and_system_history_with_since_and_count(fhir):
    first = fhir.create(patient())
    second = fhir.create(patient())
    fhir.put(f"Patient/{first['id']}", json={**first, "gender": "male"})
    history = fhir.get("Patient/_history").json()
    assert history["type"] == "history" and history["total"] == 3
    since = second["meta"]["lastUpdated"]
    recent = fhir.get(f"Patient/_history?_since={since}").json()
    assert recent["total"] == 2
    page = fhir.get("_history?_count=2").json()
    assert len(page["entry"]) == 2
    assert any(link["relation"] == "next" for link in page["link"])


def test_history_of_unknown_resource_is_404(fhir):
    assert fhir.get("Patient/nobody/_history").status_code == 404


def test_history_with_bad_since_is_400(fhir):
    assert fhir.get("Patient/_history?_since=last-tuesday").status_code == 400


# ---- formats and errors ------------------------------------------------------------------
def test_xml_read_and_create(fhir):
    created = fhir.create(patient())
    response = fhir.get(f"Patient/{created['id']}?_format=xml")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/fhir+xml")
    assert "王秀英" in response.text
    posted = fhir.http.post(
        "/fhir/Patient", content=response.content, headers={"Content-Type": "application/fhir+xml"}
    )
    assert posted.status_code == 201, posted.text
    assert posted.json()["name"][0]["text"] == "王秀英"


def test_xml_chosen_by_accept_header(fhir):
    created = fhir.create(patient())
    response = fhir.get(f"Patient/{created['id']}", headers={"Accept": "application/fhir+xml"})
    assert response.text.lstrip().startswith("<?xml")


def test_pretty_json(fhir):
    created = fhir.create(patient())
    response = fhir.get(f"Patient/{created['id']}?_pretty=true")
    assert "\n  " in response.text


def test_malformed_json_is_400(fhir):
    response = fhir.http.post("/fhir/Patient", content=b"{not json", headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_wrong_resource_type_for_endpoint_is_400(fhir):
    response = fhir.post("Observation", json=patient())
    assert response.status_code == 400


def test_structurally_invalid_resource_names_the_element(fhir):
    response = fhir.post("Patient", json=patient(birthDate="31/12/1949"))
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Patient.birthDate"]


def test_unknown_element_is_400(fhir):
    response = fhir.post("Patient", json=patient(shoeSize=42))
    assert response.status_code == 400


def test_hostile_xml_with_entities_is_refused(fhir):
    body = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b'<Patient xmlns="http://hl7.org/fhir"><gender value="&e;"/></Patient>')
    response = fhir.http.post("/fhir/Patient", content=body, headers={"Content-Type": "application/fhir+xml"})
    assert response.status_code == 400
    assert "root:" not in response.text


def test_oversized_body_is_413(fhir, server, monkeypatch):
    monkeypatch.setattr(server.settings, "max_body_bytes", 1000)
    response = fhir.post("Patient", json=patient(text={"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">" + "x" * 2000 + "</div>"}))
    assert response.status_code == 413


def test_unsupported_content_type_is_415(fhir):
    response = fhir.http.post("/fhir/Patient", content=b"name=x", headers={"Content-Type": "text/csv"})
    assert response.status_code == 415


def test_method_not_allowed_is_405_operation_outcome(fhir):
    response = fhir.http.post("/fhir/Patient/abc")
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


def test_capability_statement_lists_supported_types_and_search_params(fhir):
    statement = fhir.get("metadata").json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"Patient", "Observation", "Group", "AuditEvent"} <= set(resources)
    observation = resources["Observation"]
    codes = {i["code"] for i in observation["interaction"]}
    assert {"read", "vread", "update", "patch", "delete", "create", "search-type", "history-instance"} <= codes
    params = {p["name"]: p["type"] for p in observation["searchParam"]}
    assert params["code-value-quantity"] == "composite"
    assert params["value-quantity"] == "quantity"
    assert "lastn" in {o["name"] for o in observation["operation"]}
    assert "near" not in {p["name"] for p in resources["Location"]["searchParam"]}


def test_openapi_describes_every_route_of_the_table(fhir):
    from fhir_server.api.routes import ROUTES

    document = fhir.http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    for route in ROUTES:
        assert route.method.lower() in document["paths"]["/fhir" + route.path]
    read = document["paths"]["/fhir/{type}/{id}"]["get"]
    type_param = next(p for p in read["parameters"] if p["name"] == "type")
    assert "Patient" in type_param["schema"]["enum"]


def test_capability_statement_lists_exactly_the_registry(fhir, server):
    statement = fhir.get("metadata").json()
    listed = {
        (r["type"], p["name"]): p["type"]
        for r in statement["rest"][0]["resource"] for p in r["searchParam"]
    }
    registered = {
        (rtype, code): param.type
        for rtype in server.registry.supported_types
        for code, param in server.registry.params_for(rtype).items()
    }
    assert listed == registered
    assert {r["type"] for r in statement["rest"][0]["resource"]} == set(server.registry.supported_types)
    skipped = set(server.registry.skipped)
    assert not any(p.url in skipped for rtype in server.registry.supported_types
                   for p in server.registry.params_for(rtype).values())


def test_every_operation_names_a_definition_that_exists(fhir, server):
    """Each operation of the CapabilityStatement points at the specification's OperationDefinition
    or at one this server ships and serves, with the same code and levels."""
    server.conformance.load()  # as at start-up (the fixtures empty the store before each test)
    rest = fhir.get("metadata").json()["rest"][0]
    named = [(op, "system") for op in rest["operation"]] + [
        (op, r["type"]) for r in rest["resource"] for op in r.get("operation", [])]
    assert named
    for operation, where in named:
        url = operation["definition"]
        if url.startswith("http://hl7.org/fhir/OperationDefinition/"):
            continue
        found = fhir.get(f"OperationDefinition?url={url}").json().get("entry", [])
        assert len(found) == 1, url
        definition = found[0]["resource"]
        assert definition["code"] == operation["name"]
        assert definition["system"] if where == "system" else (definition["type"] or definition["instance"])
