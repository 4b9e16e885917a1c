"""Shipped conformance resources: in the store at start-up, searchable, read-only, listed as profiles."""

from __future__ import annotations

from fhir_server.auth.identity import SYSTEM

import json
import shutil
import threading
from urllib.parse import quote

import pytest

from fhir_server.api.capability import capability_statement
from fhir_server.api.routes import ROUTES
from fhir_server.server import Server
from fhir_server.settings import PROJECT_ROOT

from terminology_urls import BASE, LOINC, cs, vs

PATIENT_PROFILE = f"{BASE}/StructureDefinition/test-patient"


def test_shipped_terminology_is_read_and_searched_like_any_resource(fhir, shipped, terminology):
    response = fhir.get("CodeSystem/follow-up-visit-mode")
    assert response.status_code == 200, response.text
    assert response.json()["concept"][0]["designation"] == [{"language": "zh-CN", "value": "门诊"}]
    assert fhir.search_ids(f"ValueSet?url={quote(vs('salt-intake'), safe='')}") == ["salt-intake"]
    assert fhir.search_ids(f"CodeSystem?url={quote(LOINC, safe='')}") == ["loinc-chronic-disease-fragment"]
    stored = fhir.search("ConceptMap?_summary=count")["total"]
    assert stored == len([r for r in terminology.resources if r["resourceType"] == "ConceptMap"])


def test_loading_again_writes_nothing(fhir, shipped, server):
    assert shipped.written  # the truncation before this test emptied the store
    again = server.conformance.load()
    assert again.written == ()
    assert again.unchanged == len(server.conformance.shipped)
    assert fhir.get("ValueSet/salt-intake").json()["meta"]["versionId"] == "1"


def test_servers_starting_together_store_each_resource_once(fhir, server):
    errors, reports = [], []

    def load() -> None:
        try:
            reports.append(server.conformance.load())
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(reports) == 3
    assert fhir.get("ValueSet/salt-intake/_history").json()["total"] == 1
    assert fhir.get("CodeSystem/follow-up-visit-mode").json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_writes_to_a_shipped_resource_are_refused(fhir, shipped, method):
    current = fhir.get("CodeSystem/salt-intake").json()
    if method == "put":
        response = fhir.put("CodeSystem/salt-intake", json={**current, "title": "changed"})
    elif method == "patch":
        response = fhir.patch("CodeSystem/salt-intake", json=[{"op": "replace", "path": "/title", "value": "x"}])
    else:
        response = fhir.delete("CodeSystem/salt-intake")
    assert response.status_code == 405, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "shipped with the server and read-only" in outcome["issue"][0]["diagnostics"]
    assert fhir.get("CodeSystem/salt-intake").json() == current


def test_a_new_resource_may_not_take_a_shipped_url(fhir, shipped):
    response = fhir.post("ValueSet", json={"resourceType": "ValueSet", "status": "draft", "url": vs("salt-intake")})
    assert response.status_code == 405
    assert fhir.search_ids(f"ValueSet?url={quote(vs('salt-intake'), safe='')}") == ["salt-intake"]


def test_a_transaction_touching_a_shipped_resource_stores_nothing(fhir, shipped):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"text": "张三"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": "ValueSet/salt-intake"}}]}
    response = fhir.post("/", json=bundle)
    assert response.status_code == 405, response.text
    assert fhir.search("Patient?_summary=count")["total"] == 0
    assert fhir.get("ValueSet/salt-intake").status_code == 200


def test_a_store_with_only_the_shipped_resources_counts_as_fresh(fhir, shipped, server):
    with server.db.read() as conn:
        assert server.conformance.holds_only_shipped(conn)
    fhir.create({"resourceType": "Patient", "name": [{"text": "李四"}]})
    with server.db.read() as conn:
        assert not server.conformance.holds_only_shipped(conn)


def test_other_conformance_resources_stay_writable(fhir, shipped):
    own = fhir.create({"resourceType": "CodeSystem", "status": "draft", "content": "complete",
                       "url": "http://example.org/fhir/CodeSystem/ward", "concept": [{"code": "a"}]})
    assert fhir.delete(f"CodeSystem/{own['id']}").status_code in (200, 204)


def test_the_capability_statement_lists_the_shipped_profiles(fhir, server):
    statement = fhir.get("metadata").json()
    listed = {r["type"]: r.get("supportedProfile", []) for r in statement["rest"][0]["resource"]}
    for definition in server.conformance.shipped:
        if definition["resourceType"] == "StructureDefinition" and definition.get("derivation") == "constraint" \
                and definition.get("kind") == "resource":
            assert definition["url"] in listed[definition["type"]]


# ---- a server of its own, with profiles from a temporary folder -----------------------------
def _profile(url: str, profile_id: str, rtype: str, kind: str = "resource") -> dict:
    return {"resourceType": "StructureDefinition", "id": profile_id, "url": url, "name": profile_id.title(),
            "status": "draft", "kind": kind, "abstract": False, "type": rtype, "derivation": "constraint",
            "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "differential": {"element": [{"id": rtype, "path": rtype}]}}


@pytest.fixture
def own_server(settings, tmp_path, server):
    """A second server on the same database, whose shipped files live in ``tmp_path``."""
    terminology = tmp_path / "terminology"
    shutil.copytree(PROJECT_ROOT / "terminology", terminology)
    profiles = tmp_path / "profiles"
    (profiles / "examples").mkdir(parents=True)
    (profiles / "test-patient.json").write_text(json.dumps(_profile(PATIENT_PROFILE, "test-patient", "Patient")))
    (profiles / "test-extension.json").write_text(
        json.dumps(_profile(f"{BASE}/StructureDefinition/test-ext", "test-ext", "Extension", "complex-type")))
    (profiles / "examples" / "bad.json").write_text(
        json.dumps(_profile(f"{BASE}/StructureDefinition/example", "example", "Observation")))
    own = Server(settings.model_copy(update={"terminology_dir": terminology, "local_profiles_dir": profiles}))
    yield own, terminology
    own.close()


def test_local_profiles_are_stored_and_listed_but_not_their_examples(own_server):
    own, _ = own_server
    assert own.resources.read("StructureDefinition", "test-patient", identity=SYSTEM)["url"] == PATIENT_PROFILE
    assert own.resources.read("StructureDefinition", "test-ext", identity=SYSTEM)["type"] == "Extension"
    assert "example" not in {r["id"] for r in own.conformance.shipped}
    resources = {r["type"]: r for r in capability_statement(own, ROUTES, "http://x/fhir")["rest"][0]["resource"]}
    assert resources["Patient"]["supportedProfile"] == [PATIENT_PROFILE]
    assert "supportedProfile" not in resources["Observation"]


def test_a_changed_file_is_stored_as_a_new_version_at_the_next_start(own_server, settings):
    own, terminology = own_server
    before = own.resources.read("CodeSystem", "salt-intake", identity=SYSTEM)
    path = terminology / "codesystems" / "salt-intake.json"
    changed = json.loads(path.read_text(encoding="utf-8"))
    changed["concept"][0]["designation"][0]["value"] = "淡"
    path.write_text(json.dumps(changed, ensure_ascii=False), encoding="utf-8")
    restarted = Server(own.settings)
    try:
        after = restarted.resources.read("CodeSystem", "salt-intake", identity=SYSTEM)
        assert after["meta"]["versionId"] == str(int(before["meta"]["versionId"]) + 1)
        assert after["concept"][0]["designation"][0]["value"] == "淡"
        assert restarted.terminology.lookup(cs("salt-intake"), "1", display_language="zh-CN").display == "淡"
    finally:
        restarted.close()
