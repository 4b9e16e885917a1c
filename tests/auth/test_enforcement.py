"""Every FHIR request but /metadata needs a valid token (401), and its scopes must grant the
interaction on the type (403): v1 and v2 scopes across the interactions, batch and transaction
entries one by one."""

from __future__ import annotations

import base64
import uuid

import orjson
import pytest

from fhir_server.api.routes import ROUTES
from fhir_server.auth.permissions import (
    ENTRY_INTERACTIONS,
    INTERACTION_ACTIONS,
    OPERATION_ACTIONS,
    PUBLIC_INTERACTIONS,
)
from tests.auth.conftest import bearer

ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"
# Each test stores its own patient (id and identifier {pid}) with one observation.
PATIENT = {"resourceType": "Patient", "id": "{pid}", "identifier": [{"system": ID_SYSTEM, "value": "{pid}"}],
           "gender": "female", "name": [{"family": "王", "given": ["芳"]}]}
OBSERVATION = {
    "resourceType": "Observation", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "subject": {"reference": "Patient/{pid}"}, "effectiveDateTime": "2026-05-01",
}
OUTSIDER = {"resourceType": "Patient", "identifier": [{"system": ID_SYSTEM, "value": "2"}]}

# interaction: (method, path, body, extra headers, status when allowed)
REQUESTS = {
    "read": ("GET", "/fhir/Patient/{pid}", None, {}, 200),
    "vread": ("GET", "/fhir/Patient/{pid}/_history/1", None, {}, 200),
    "search": ("GET", "/fhir/Patient?gender=female", None, {}, 200),
    "search-post": ("POST", "/fhir/Patient/_search", b"gender=female",
                    {"Content-Type": "application/x-www-form-urlencoded"}, 200),
    "history-instance": ("GET", "/fhir/Patient/{pid}/_history", None, {}, 200),
    "history-type": ("GET", "/fhir/Patient/_history", None, {}, 200),
    "history-system": ("GET", "/fhir/_history", None, {}, 200),
    "create": ("POST", "/fhir/Patient", OUTSIDER, {}, 201),
    "conditional-create": ("POST", "/fhir/Patient", OUTSIDER, {"If-None-Exist": f"identifier={ID_SYSTEM}|{{pid}}"}, 200),
    "update": ("PUT", "/fhir/Patient/{pid}", {**PATIENT, "gender": "male"}, {}, 200),
    "conditional-update": ("PUT", f"/fhir/Patient?identifier={ID_SYSTEM}|{{pid}}", {**PATIENT, "gender": "male"}, {}, 200),
    "patch": ("PATCH", "/fhir/Patient/{pid}", [{"op": "replace", "path": "/gender", "value": "male"}],
              {"Content-Type": "application/json-patch+json"}, 200),
    "delete": ("DELETE", "/fhir/Patient/{pid}", None, {}, 200),
    "conditional-delete": ("DELETE", f"/fhir/Patient?identifier={ID_SYSTEM}|{{pid}}", None, {}, 200),
    "everything": ("GET", "/fhir/Patient/{pid}/$everything", None, {}, 200),
    "lastn": ("GET", "/fhir/Observation/$lastn?code=http://loinc.org|85354-9", None, {}, 200),
    "meta-add": ("POST", "/fhir/Patient/{pid}/$meta-add",
                 {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {
                     "tag": [{"system": "urn:test", "code": "t"}]}}]}, {}, 200),
}
PATIENT_READS = {"read", "vread", "everything"}
PATIENT_SEARCHES = {"search", "search-post", "history-instance", "history-type"}
PATIENT_WRITES = {"create", "conditional-create", "update", "conditional-update", "patch", "delete",
                  "conditional-delete", "meta-add"}
EVERYTHING = set(REQUESTS)

# scope -> what it allows, written out by hand (not derived from the code under test)
MATRIX = {
    "system/Patient.r": PATIENT_READS,
    "system/Patient.s": PATIENT_SEARCHES,
    "system/Patient.rs": PATIENT_READS | PATIENT_SEARCHES,
    "system/Patient.read": PATIENT_READS | PATIENT_SEARCHES,                   # v1
    "system/Patient.c": {"create", "conditional-create"},
    "system/Patient.u": {"update", "conditional-update", "patch", "meta-add"},
    "system/Patient.d": {"delete", "conditional-delete"},
    "system/Patient.write": PATIENT_WRITES,                                   # v1
    "user/Patient.cruds": PATIENT_READS | PATIENT_SEARCHES | PATIENT_WRITES,
    "system/Observation.cruds": {"lastn"},
    "system/*.rs": PATIENT_READS | PATIENT_SEARCHES | {"history-system", "lastn"},
    "patient/*.read": PATIENT_READS | PATIENT_SEARCHES | {"history-system", "lastn"},  # v1
    "system/*.*": EVERYTHING,                                                  # v1
    "system/*.cruds": EVERYTHING,
}


def _with_id(node, pid: str):
    """``node`` (a path, header, body...) with every ``{pid}`` replaced by the test's patient id."""
    if isinstance(node, str):
        return node.replace("{pid}", pid)
    if isinstance(node, dict):
        return {k: _with_id(v, pid) for k, v in node.items()}
    if isinstance(node, list):
        return [_with_id(v, pid) for v in node]
    return node


@pytest.fixture
def pid(fhir) -> str:
    """A stored patient with one observation; its id is also its identifier value."""
    pid = uuid.uuid4().hex[:16]
    assert fhir.put(f"Patient/{pid}", json=_with_id(PATIENT, pid)).status_code == 201
    fhir.create(_with_id(OBSERVATION, pid))
    return pid


def _send(http, name: str, token: str, pid: str = "p0"):
    method, path, body, headers, _ = _with_id(list(REQUESTS[name]), pid)
    content = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else None
    headers = {"Content-Type": "application/fhir+json", **headers, **bearer(token)}
    return http.request(method, path, content=content, headers=headers)


@pytest.mark.parametrize("scope", sorted(MATRIX))
@pytest.mark.parametrize("interaction", sorted(REQUESTS))
def test_scopes_grant_exactly_their_interactions(fhir, anonymous, token_for, pid, scope, interaction):
    response = _send(anonymous, interaction, token_for(scope), pid)
    if interaction in MATRIX[scope]:
        assert response.status_code == REQUESTS[interaction][4], response.text
    else:
        assert response.status_code == 403, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "forbidden"
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
        assert fhir.get(f"Patient/{pid}").json()["gender"] == "female"  # nothing was changed


def test_without_a_token_every_fhir_request_is_401_with_a_bearer_challenge(anonymous):
    for name in REQUESTS:
        response = _send(anonymous, name, "")
        assert response.status_code == 401, (name, response.text)
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="county-fhir"'
        assert response.json()["issue"][0]["code"] == "login"


@pytest.mark.parametrize("authorization", [
    "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer", "Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.",
])
def test_a_bad_credential_is_401_invalid_token(anonymous, authorization):
    response = anonymous.get("/fhir/Patient", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="county-fhir"')


def test_a_401_answers_in_xml_when_xml_is_asked(anonymous):
    response = anonymous.get("/fhir/Patient", headers={"Accept": "application/fhir+xml"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/fhir+xml")
    assert b"<OperationOutcome" in response.content


def test_metadata_is_public_and_announces_smart(anonymous):
    response = anonymous.get("/fhir/metadata")
    assert response.status_code == 200
    [rest] = response.json()["rest"]
    security = rest["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    [uris] = security["extension"]
    assert uris["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    assert {"url": "token", "valueUri": "http://testserver/auth/token"} in uris["extension"]
    assert security["cors"] is False


def test_every_route_has_a_scope_rule():
    for route in ROUTES:
        known = (route.interaction in PUBLIC_INTERACTIONS | ENTRY_INTERACTIONS
                 or route.interaction in INTERACTION_ACTIONS or route.operation in OPERATION_ACTIONS)
        assert known, f"{route.method} {route.path} has no scope rule in auth/permissions.py"


def _bundle(kind: str, pid: str) -> dict:
    patch = base64.b64encode(orjson.dumps([{"op": "replace", "path": "/gender", "value": "male"}])).decode()
    return _with_id({"resourceType": "Bundle", "type": kind, "entry": [
        {"resource": OUTSIDER, "request": {"method": "POST", "url": "Patient"}},
        {"resource": OBSERVATION, "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "GET", "url": "Patient/{pid}"}},
        {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
         "request": {"method": "PATCH", "url": "Patient/{pid}"}},
    ]}, pid)


def test_a_transaction_with_one_forbidden_entry_is_refused_whole(fhir, anonymous, token_for, pid):
    bundle = _bundle("transaction", pid)
    response = anonymous.post("/fhir", json=bundle, headers=bearer(token_for("system/Patient.cruds")))
    assert response.status_code == 403, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "forbidden" and issue["expression"][0] == "Bundle.entry[1]"
    assert fhir.search("Patient?_summary=count")["total"] == 1  # the Patient entry was not stored
    assert fhir.get(f"Patient/{pid}").json()["gender"] == "female"


def test_a_batch_refuses_only_its_forbidden_entries(fhir, anonymous, token_for, pid):
    bundle = _bundle("batch", pid)
    response = anonymous.post("/fhir", json=bundle, headers=bearer(token_for("system/Patient.cr")))
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201 Created", "403 Forbidden", "200 OK", "403 Forbidden"]
    assert response.json()["entry"][1]["response"]["outcome"]["issue"][0]["code"] == "forbidden"
    assert fhir.search("Observation?_summary=count")["total"] == 1  # the stored one only
    assert fhir.get(f"Patient/{pid}").json()["gender"] == "female"


@pytest.mark.parametrize(("path", "scopes", "status"), [
    ("/fhir/Observation?subject:Patient.name=王", "system/Observation.rs", 403),
    ("/fhir/Observation?subject:Patient.name=王", "system/Observation.rs system/Patient.s", 200),
    ("/fhir/Patient?_has:Observation:subject:code=85354-9", "system/Patient.rs", 403),
    ("/fhir/Patient?_has:Observation:subject:code=85354-9", "system/Patient.rs system/Observation.s", 200),
])
def test_chains_and_has_over_http_need_search_on_the_types_they_reach(anonymous, token_for, pid, path,
                                                                     scopes, status):
    response = anonymous.get(path, headers=bearer(token_for(scopes)))
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["issue"][0]["code"] == "forbidden"
    else:
        assert response.json()["total"] == 1


def test_includes_bring_only_types_the_scopes_may_read(anonymous, token_for, pid):
    """Scopes bind unrestricted clients (bound to no organisation) too: that lifts only the
    organisation limit."""
    def types(path: str, scopes: str) -> list[str]:
        bundle = anonymous.get(path, headers=bearer(token_for(scopes))).json()
        return sorted(e["resource"]["resourceType"] for e in bundle["entry"])

    include = f"/fhir/Observation?subject={pid}&_include=Observation:subject"
    assert types(include, "system/Observation.rs") == ["Observation"]
    assert types(include, "system/Observation.rs system/Patient.r") == ["Observation", "Patient"]
    revinclude = f"/fhir/Patient?_id={pid}&_revinclude=Observation:subject"
    assert types(revinclude, "system/Patient.rs") == ["Patient"]
    assert types(revinclude, "system/Patient.rs system/Observation.r") == ["Observation", "Patient"]
