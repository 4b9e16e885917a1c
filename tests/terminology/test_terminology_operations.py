"""$lookup, $validate-code, $expand and $translate over HTTP, with Parameters in and out."""

from __future__ import annotations

from urllib.parse import quote

from terminology_urls import ADMINISTRATIVE_GENDER, LOINC, SEX, SEX_MAP, cs, vs


def _out(parameters: dict) -> dict:
    """Parameters -> {name: value} for the simple outputs (the last one of each name)."""
    assert parameters["resourceType"] == "Parameters"
    out = {}
    for parameter in parameters["parameter"]:
        value = [v for k, v in parameter.items() if k.startswith("value")]
        out[parameter["name"]] = value[0] if value else parameter.get("part")
    return out


def _all(parameters: dict, name: str) -> list[dict]:
    return [p for p in parameters["parameter"] if p["name"] == name]


def _parts(parameter: dict) -> dict:
    return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in parameter["part"]}


def _q(value: str) -> str:
    return quote(value, safe="")


# ---- $lookup --------------------------------------------------------------------------------
def test_lookup_returns_the_display_and_the_chinese_designation(fhir):
    response = fhir.get(f"CodeSystem/$lookup?system={_q(cs('medication-compliance'))}&code=2")
    assert response.status_code == 200, response.text
    body = response.json()
    assert _out(body)["display"] == "Intermittent"
    assert _out(body)["name"] == "MedicationCompliance"
    assert [_parts(d) for d in _all(body, "designation")] == [{"language": "zh-CN", "value": "间断"}]


def test_lookup_by_post_with_a_coding_and_a_display_language(fhir):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": LOINC, "code": "8462-4"}},
        {"name": "displayLanguage", "valueCode": "zh-CN"}]}
    response = fhir.post("CodeSystem/$lookup", json=body)
    assert response.status_code == 200, response.text
    assert _out(response.json())["display"] == "舒张压"


def test_lookup_of_a_definition_gives_it_as_a_property(fhir):
    response = fhir.get(f"CodeSystem/$lookup?system={_q(cs('blood-pressure-grade'))}&code=grade-3")
    definition = [_parts(p) for p in _all(response.json(), "property")]
    assert definition == [{"code": "definition", "value": "SBP >= 180 mmHg and/or DBP >= 110 mmHg"}]


def test_lookup_errors_are_operation_outcomes(fhir):
    missing = fhir.get(f"CodeSystem/$lookup?system={_q(LOINC)}")
    assert missing.status_code == 400
    assert missing.json()["resourceType"] == "OperationOutcome"
    unknown = fhir.get(f"CodeSystem/$lookup?system={_q(LOINC)}&code=1234-5")
    assert unknown.status_code == 404
    assert "fragment" in unknown.json()["issue"][0]["diagnostics"]


# ---- $validate-code -------------------------------------------------------------------------
def test_validate_code_with_a_chinese_display(fhir):
    url = vs("follow-up-classification")
    query = f"url={_q(url)}&system={_q(cs('follow-up-classification'))}&code=4&display={_q('并发症')}"
    response = fhir.get(f"ValueSet/$validate-code?{query}")
    assert response.status_code == 200, response.text
    assert _out(response.json()) == {"result": True, "display": "Complication"}


def test_validate_code_of_a_code_outside_the_value_set_is_false_with_a_message(fhir):
    url = vs("follow-up-visit-mode")
    response = fhir.get(f"ValueSet/$validate-code?url={_q(url)}&system={_q(cs('follow-up-visit-mode'))}&code=9")
    out = _out(response.json())
    assert out["result"] is False
    assert "not in the value set" in out["message"]


def test_validate_code_by_post_with_a_codeable_concept(fhir):
    concept = {"coding": [{"system": "http://example.org/his", "code": "GXY"},
                          {"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}], "text": "高血压"}
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": vs("chronic-disease-condition-code")},
        {"name": "codeableConcept", "valueCodeableConcept": concept}]}
    response = fhir.post("ValueSet/$validate-code", json=body)
    assert response.status_code == 200, response.text
    assert _out(response.json())["result"] is True


def test_validate_code_that_cannot_be_checked_names_the_unknown_system(fhir):
    response = fhir.get(f"ValueSet/$validate-code?url={_q(vs('loinc-code'))}&system={_q(LOINC)}&code=1234-5")
    out = _out(response.json())
    assert out["result"] is False
    assert out["x-caused-by-unknown-system"] == LOINC


def test_validate_code_against_a_stored_value_set_instance(fhir, shipped):
    response = fhir.get(f"ValueSet/salt-intake/$validate-code?system={_q(cs('salt-intake'))}&code=3")
    assert response.status_code == 200, response.text
    assert _out(response.json()) == {"result": True, "display": "Heavy"}


def test_validate_code_errors(fhir):
    unknown = fhir.get(f"ValueSet/$validate-code?url={_q(vs('nope'))}&system=x&code=1")
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"
    no_url = fhir.get("ValueSet/$validate-code?system=x&code=1")
    assert no_url.status_code == 400
    no_code = fhir.get(f"ValueSet/$validate-code?url={_q(vs('salt-intake'))}")
    assert no_code.status_code == 400


# ---- $expand --------------------------------------------------------------------------------
def _contains(response) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "ValueSet"
    return [(c["code"], c.get("display")) for c in body["expansion"].get("contains", [])]


def test_expand_with_a_chinese_filter_for_a_type_ahead_picker(fhir):
    url = _q(vs("vital-sign-code"))
    assert _contains(fhir.get(f"ValueSet/$expand?url={url}&filter={_q('血压')}&displayLanguage=zh-CN")) == [
        ("85354-9", "血压")]
    assert [code for code, _ in _contains(fhir.get(f"ValueSet/$expand?url={url}&filter={_q('压')}"))] == [
        "85354-9", "8480-6", "8462-4"]


def test_expand_with_an_english_filter_and_paging(fhir):
    url = _q(vs("hypertension-symptom"))
    assert _contains(fhir.get(f"ValueSet/$expand?url={url}&filter=chest")) == [
        ("6", "Palpitations or chest tightness")]
    page = fhir.get(f"ValueSet/$expand?url={url}&count=3&offset=3")
    assert [code for code, _ in _contains(page)] == ["4", "5", "6"]
    assert page.json()["expansion"]["total"] == 10
    assert page.json()["expansion"]["offset"] == 3


def test_expand_by_post_with_designations(fhir):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": vs("self-management-group-role")},
        {"name": "filter", "valueString": "组长"},
        {"name": "includeDesignations", "valueBoolean": True}]}
    response = fhir.post("ValueSet/$expand", json=body)
    contains = response.json()["expansion"]["contains"]
    assert [(c["code"], c["designation"][0]["value"]) for c in contains] == [
        ("leader", "组长"), ("deputy-leader", "副组长")]


def test_expand_a_stored_value_set_instance(fhir, shipped):
    assert _contains(fhir.get("ValueSet/referral-direction/$expand?displayLanguage=zh")) == [
        ("upward", "上转"), ("downward", "下转")]


def test_expand_a_clients_own_value_set_over_shipped_code_systems(fhir):
    own = fhir.create({"resourceType": "ValueSet", "status": "draft", "url": "http://example.org/fhir/ValueSet/urgent",
                       "compose": {"include": [{"system": cs("referral-reason"),
                                                "concept": [{"code": "urgent-blood-pressure"},
                                                            {"code": "urgent-glucose"}]}]}})
    assert [code for code, _ in _contains(fhir.get(f"ValueSet/{own['id']}/$expand?filter=glucose"))] == [
        "urgent-glucose"]


def test_expand_errors(fhir):
    assert fhir.get(f"ValueSet/$expand?url={_q(vs('nope'))}").status_code == 404
    assert fhir.get("ValueSet/$expand").status_code == 400
    assert fhir.get("ValueSet/no-such-id/$expand").status_code == 404
    too_big = fhir.get(f"ValueSet/$expand?url={_q(vs('loinc-code'))}")
    assert too_big.status_code == 422
    assert too_big.json()["resourceType"] == "OperationOutcome"
    bad_count = fhir.get(f"ValueSet/$expand?url={_q(vs('salt-intake'))}&count=-1")
    assert bad_count.status_code == 400


# ---- $translate -----------------------------------------------------------------------------
def test_translate_gb_sex_to_fhir_gender(fhir):
    response = fhir.get(f"ConceptMap/$translate?url={_q(SEX_MAP)}&system={_q(SEX)}&code=1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert _out(body)["result"] is True
    assert [_parts(m) for m in _all(body, "match")] == [{
        "equivalence": "equivalent", "concept": {"system": ADMINISTRATIVE_GENDER, "code": "male", "display": "Male"},
        "source": SEX_MAP}]


def test_translate_in_reverse_by_post(fhir):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": ADMINISTRATIVE_GENDER, "code": "female"}},
        {"name": "reverse", "valueBoolean": True}]}
    response = fhir.post("ConceptMap/$translate", json=body)
    concepts = [_parts(m)["concept"]["code"] for m in _all(response.json(), "match")]
    assert concepts == ["2"]


def test_translate_a_local_lab_code_through_the_stored_map_instance(fhir, shipped):
    query = f"system={_q(cs('county-hospital-lab'))}&code=HBA1C&targetsystem={_q(LOINC)}"
    response = fhir.get(f"ConceptMap/county-hospital-lab-to-loinc/$translate?{query}")
    matches = [_parts(m) for m in _all(response.json(), "match")]
    assert [m["concept"]["code"] for m in matches] == ["4548-4"]


def test_translate_without_a_mapping_is_false(fhir):
    response = fhir.get(f"ConceptMap/$translate?system={_q(cs('county-hospital-lab'))}&code=GLU-2H")
    out = _out(response.json())
    assert out["result"] is False
    assert _parts(_all(response.json(), "match")[0]) == {
        "equivalence": "unmatched", "source": "https://county-fhir.example.org/fhir/ConceptMap/county-hospital-lab-to-loinc"}


def test_translate_errors(fhir):
    assert fhir.get(f"ConceptMap/$translate?url={_q(SEX_MAP)}&code=1").status_code == 400
    unknown = fhir.get(f"ConceptMap/$translate?url={_q(SEX_MAP + 'x')}&system={_q(SEX)}&code=1")
    assert unknown.status_code == 404


# ---- CapabilityStatement --------------------------------------------------------------------
def test_the_capability_statement_lists_the_terminology_operations(fhir):
    statement = fhir.get("metadata").json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    operations = {
        (rtype, o["name"]): o["definition"] for rtype in ("CodeSystem", "ValueSet", "ConceptMap")
        for o in resources[rtype].get("operation", [])
    }
    assert operations[("CodeSystem", "lookup")] == "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup"
    assert operations[("ValueSet", "expand")] == "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"
    assert operations[("ValueSet", "validate-code")] == (
        "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code")
    assert operations[("ConceptMap", "translate")] == "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate"
