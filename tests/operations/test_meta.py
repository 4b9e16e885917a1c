"""$meta at system, type and instance level; $meta-add and $meta-delete."""

from __future__ import annotations

TAGS = "http://example.org/tags"
SEC = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
PROFILE_BP = "http://hl7.org/fhir/StructureDefinition/bp"
PROFILE_PAT = "http://example.org/StructureDefinition/county-patient"


def _meta(response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Parameters"
    [param] = body["parameter"]
    assert param["name"] == "return"
    return param["valueMeta"]


def _codes(codings: list[dict]) -> set[tuple]:
    return {(c.get("system"), c["code"]) for c in codings}


def _seed(fhir) -> tuple[dict, dict]:
    patient = fhir.create({"resourceType": "Patient", "meta": {
        "profile": [PROFILE_PAT], "tag": [{"system": TAGS, "code": "village-import"}],
        "security": [{"system": SEC, "code": "R"}],
    }})
    obs = fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "bp"},
                       "meta": {"profile": [PROFILE_BP], "tag": [{"system": TAGS, "code": "device"}]}})
    fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "bp"},
                 "meta": {"tag": [{"system": TAGS, "code": "device"}]}})
    gone = fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                        "meta": {"tag": [{"system": TAGS, "code": "deleted-only"}]}})
    fhir.delete(f"Observation/{gone['id']}")
    return patient, obs


def test_meta_system_level(fhir):
    _seed(fhir)
    meta = _meta(fhir.get("$meta"))
    assert meta["profile"] == sorted([PROFILE_BP, PROFILE_PAT])
    assert _codes(meta["tag"]) == {(TAGS, "device"), (TAGS, "village-import")}  # not the deleted one
    assert _codes(meta["security"]) == {(SEC, "R")}
    assert _meta(fhir.post("$meta")) == meta


def test_meta_type_level(fhir):
    _seed(fhir)
    meta = _meta(fhir.get("Observation/$meta"))
    assert meta == {"profile": [PROFILE_BP], "tag": [{"system": TAGS, "code": "device"}]}
    assert _meta(fhir.get("Encounter/$meta")) == {}
    assert fhir.get("NoSuchType/$meta").status_code == 404


def test_meta_instance_level(fhir):
    patient, _ = _seed(fhir)
    meta = _meta(fhir.get(f"Patient/{patient['id']}/$meta"))
    assert meta == patient["meta"]
    assert fhir.get("Patient/nobody/$meta").status_code == 404


def test_meta_add_and_delete(fhir):
    patient, _ = _seed(fhir)
    pid = patient["id"]
    added = _meta(fhir.post(f"Patient/{pid}/$meta-add", json={"resourceType": "Parameters", "parameter": [
        {"name": "meta", "valueMeta": {
            "tag": [{"system": TAGS, "code": "reviewed", "display": "Reviewed"},
                    {"system": TAGS, "code": "village-import"}],  # already there: not doubled
            "profile": ["http://example.org/StructureDefinition/other"],
        }},
    ]}))
    assert _codes(added["tag"]) == {(TAGS, "village-import"), (TAGS, "reviewed")}
    assert len(added["tag"]) == 2
    assert added["profile"] == [PROFILE_PAT, "http://example.org/StructureDefinition/other"]
    assert added["security"] == patient["meta"]["security"]
    assert added["versionId"] == "2"  # choice: meta-add writes a new version
    stored = fhir.get(f"Patient/{pid}").json()
    assert stored["meta"] == added
    assert fhir.search_ids(f"Patient?_tag={TAGS}|reviewed") == [pid]  # the new version is indexed

    # adding nothing new is a no-op: no new version
    again = _meta(fhir.post(f"Patient/{pid}/$meta-add", json={"resourceType": "Parameters", "parameter": [
        {"name": "meta", "valueMeta": {"tag": [{"system": TAGS, "code": "reviewed"}]}}]}))
    assert again["versionId"] == "2"

    removed = _meta(fhir.post(f"Patient/{pid}/$meta-delete", json={"resourceType": "Parameters", "parameter": [
        {"name": "meta", "valueMeta": {
            "tag": [{"system": TAGS, "code": "village-import"}],
            "security": [{"system": SEC, "code": "R"}],
            "profile": [PROFILE_PAT],
        }},
    ]}))
    assert _codes(removed["tag"]) == {(TAGS, "reviewed")}
    assert "security" not in removed
    assert removed["profile"] == ["http://example.org/StructureDefinition/other"]
    assert removed["versionId"] == "3"
    assert fhir.search_ids(f"Patient?_tag={TAGS}|village-import") == []
    assert fhir.search_ids(f"Patient?_security={SEC}|R") == []
    assert _codes(_meta(fhir.get("Patient/$meta"))["tag"]) == {(TAGS, "reviewed")}


def test_meta_add_errors(fhir):
    patient, _ = _seed(fhir)
    body = {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {"tag": [{"code": "x"}]}}]}
    assert fhir.post("Patient/nobody/$meta-add", json=body).status_code == 404
    assert fhir.post(f"Patient/{patient['id']}/$meta-add", json={"resourceType": "Parameters"}).status_code == 400
    assert fhir.post(f"Patient/{patient['id']}/$meta-add", json={"resourceType": "Patient"}).status_code == 400
    fhir.delete(f"Patient/{patient['id']}")
    assert fhir.post(f"Patient/{patient['id']}/$meta-delete", json=body).status_code == 410
    assert fhir.get(f"Patient/{patient['id']}/$meta").status_code == 410
