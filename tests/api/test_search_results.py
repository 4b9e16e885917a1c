"""What a search returns: includes, sorting, paging, summaries, totals, the common parameters,
POST _search, how unknown and malformed parameters are answered, and that deleted resources
never come back. Data: a township health centre's hypertension follow-up records.
"""

from __future__ import annotations

import time

import pytest

RID = "urn:oid:2.16.156.10011.1.3"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
TAGS = "http://county.example.cn/fhir/tags"
CN_PATIENT = "http://county.example.cn/fhir/StructureDefinition/cn-patient"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
SUBSETTED = "SUBSETTED"


def ref(resource: dict) -> dict:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def organization(fhir, name: str, part_of: dict | None = None) -> dict:
    body = {"resourceType": "Organization", "name": name}
    if part_of:
        body["partOf"] = ref(part_of)
    return fhir.create(body)


def resident(fhir, family: str, given: str, number: str, birth: str, gender: str, **extra) -> dict:
    return fhir.create({
        "resourceType": "Patient",
        "identifier": [{"system": RID, "value": number}],
        "name": [{"family": family, "given": [given], "text": f"{family}{given}"}],
        "gender": gender, "birthDate": birth, **extra,
    })


def bp(fhir, patient: dict, systolic: float, diastolic: float, when: str, encounter: dict | None = None) -> dict:
    def component(code: str, value: float) -> dict:
        return {"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
    body = {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}], "text": "血压"},
            "subject": ref(patient), "effectiveDateTime": when,
            "note": [{"text": "随访测量, 坐位右臂"}],
            "component": [component("8480-6", systolic), component("8462-4", diastolic)]}
    if encounter:
        body["encounter"] = ref(encounter)
    return fhir.create(body)


def match_ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def include_ids(bundle: dict) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "include"}


def outcomes(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]


def search(fhir, rtype: str, *pairs: tuple[str, str], **kw) -> dict:
    response = fhir.get(rtype, params=list(pairs), **kw)
    assert response.status_code == 200, response.text
    return response.json()


def link(bundle: dict, relation: str) -> str | None:
    return next((li["url"] for li in bundle.get("link", []) if li["relation"] == relation), None)


@pytest.fixture
def town(fhir) -> dict:
    """A township centre with a village clinic, two residents and their follow-ups."""
    county = organization(fhir, "县人民医院")
    centre = organization(fhir, "城关镇卫生院", county)
    village = organization(fhir, "东风村卫生室", centre)
    wang = resident(fhir, "王", "秀英", "110101195001011234", "1950-01-01", "female",
                    managingOrganization=ref(village), maritalStatus={"text": "已婚"},
                    contact=[{"name": {"family": "王", "given": ["建华"]}, "telecom": [{"system": "phone", "value": "13800000000"}]}])
    li = resident(fhir, "李", "建国", "110101196203154321", "1962-03-15", "male", managingOrganization=ref(centre))
    encounter = fhir.create({"resourceType": "Encounter", "status": "finished",
                             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                             "subject": ref(wang), "serviceProvider": ref(village),
                             "period": {"start": "2024-03-10T09:00:00+08:00", "end": "2024-03-10T10:00:00+08:00"}})
    bp_wang = bp(fhir, wang, 185, 95, "2024-03-10T09:30:00+08:00", encounter)
    bp_li = bp(fhir, li, 150, 92, "2024-03-11T10:00:00+08:00")
    condition = fhir.create({"resourceType": "Condition", "subject": ref(wang),
                             "code": {"coding": [{"system": ICD10, "code": "I10"}]}})
    return dict(county=county, centre=centre, village=village, wang=wang, li=li, encounter=encounter,
                bp_wang=bp_wang, bp_li=bp_li, condition=condition)


# ---- _include / _revinclude -------------------------------------------------------------------


def test_include_adds_the_referenced_resources(fhir, town):
    bundle = search(fhir, "Observation", ("_id", town["bp_wang"]["id"]), ("_include", "Observation:encounter"))
    assert match_ids(bundle) == [town["bp_wang"]["id"]]
    assert include_ids(bundle) == {town["encounter"]["id"]}
    assert bundle["total"] == 1  # includes are not counted


def test_include_without_iterate_does_not_follow_included_resources(fhir, town):
    bundle = search(fhir, "Observation", ("_id", town["bp_wang"]["id"]),
                    ("_include", "Observation:encounter"), ("_include", "Encounter:service-provider"))
    assert include_ids(bundle) == {town["encounter"]["id"]}


def test_include_iterate_follows_observation_encounter_organization(fhir, town):
    bundle = search(fhir, "Observation", ("_id", town["bp_wang"]["id"]),
                    ("_include", "Observation:encounter"), ("_include:iterate", "Encounter:service-provider"),
                    ("_include:iterate", "Organization:partof"))
    assert include_ids(bundle) == {town["encounter"]["id"], town["village"]["id"], town["centre"]["id"],
                                   town["county"]["id"]}


def test_include_with_target_type_and_wildcard(fhir, town):
    bundle = search(fhir, "Observation", ("code", "85354-9"), ("_include", "Observation:subject:Patient"))
    assert include_ids(bundle) == {town["wang"]["id"], town["li"]["id"]}
    assert include_ids(search(fhir, "Observation", ("_id", town["bp_wang"]["id"]),
                              ("_include", "Observation:subject:Group"))) == set()
    bundle = search(fhir, "Observation", ("_id", town["bp_wang"]["id"]), ("_include", "Observation:*"))
    assert include_ids(bundle) == {town["wang"]["id"], town["encounter"]["id"]}


def test_a_resource_both_matched_and_included_appears_once(fhir, town):
    bundle = search(fhir, "Organization", ("_include", "Organization:partof"))
    ids = [e["resource"]["id"] for e in bundle["entry"]]
    assert len(ids) == len(set(ids)) == 3
    assert include_ids(bundle) == set()


def test_revinclude(fhir, town):
    bundle = search(fhir, "Patient", ("_id", town["wang"]["id"]), ("_revinclude", "Observation:patient"))
    assert match_ids(bundle) == [town["wang"]["id"]]
    assert include_ids(bundle) == {town["bp_wang"]["id"]}
    bundle = search(fhir, "Patient", ("_id", town["wang"]["id"]), ("_revinclude", "Observation:subject"),
                    ("_revinclude", "Condition:subject"))
    assert include_ids(bundle) == {town["bp_wang"]["id"], town["condition"]["id"]}


def test_revinclude_iterate_walks_down_the_organization_tree(fhir, town):
    bundle = search(fhir, "Organization", ("_id", town["county"]["id"]), ("_revinclude:iterate", "Organization:partof"))
    assert include_ids(bundle) == {town["centre"]["id"], town["village"]["id"]}
    bundle = search(fhir, "Organization", ("_id", town["county"]["id"]), ("_revinclude", "Organization:partof"))
    assert include_ids(bundle) == {town["centre"]["id"]}


# ---- _sort ------------------------------------------------------------------------------------


def test_sort_by_several_keys(fhir, town):
    zhang = resident(fhir, "张", "伟", "110101197001010011", "1970", "male")
    liu = resident(fhir, "刘", "芳", "11010119850601002X", "1985-06", "female")
    bundle = search(fhir, "Patient", ("_sort", "gender,-birthdate"))
    assert match_ids(bundle) == [liu["id"], town["wang"]["id"], zhang["id"], town["li"]["id"]]
    bundle = search(fhir, "Patient", ("_sort", "-gender,birthdate"))
    assert match_ids(bundle) == [town["li"]["id"], zhang["id"], town["wang"]["id"], liu["id"]]


def test_sort_by_date_both_ways(fhir, town):
    ascending = match_ids(search(fhir, "Observation", ("_sort", "date")))
    assert ascending == [town["bp_wang"]["id"], town["bp_li"]["id"]]
    assert match_ids(search(fhir, "Observation", ("_sort", "-date"))) == ascending[::-1]


def test_sort_puts_missing_values_last(fhir, town):
    nobody = fhir.create({"resourceType": "Patient", "name": [{"family": "赵"}]})  # no birth date
    for key in ("birthdate", "-birthdate"):
        assert match_ids(search(fhir, "Patient", ("_sort", key)))[-1] == nobody["id"]


def test_sort_by_quantity_and_by_id(fhir, town):
    glucose = [fhir.create({"resourceType": "Observation", "status": "final",
                            "code": {"coding": [{"system": LOINC, "code": "14771-0"}]}, "subject": ref(town["li"]),
                            "valueQuantity": {"value": v, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}})
               for v in (7.1, 5.2, 6.3)]
    by_value = match_ids(search(fhir, "Observation", ("code", "14771-0"), ("_sort", "value-quantity")))
    assert by_value == [glucose[1]["id"], glucose[2]["id"], glucose[0]["id"]]
    by_id = match_ids(search(fhir, "Observation", ("code", "14771-0"), ("_sort", "-_id")))
    assert by_id == sorted((g["id"] for g in glucose), reverse=True)


# ---- paging -----------------------------------------------------------------------------------


@pytest.fixture
def seven(fhir, town) -> list[str]:
    """Seven glucose readings of 王秀英 on seven days; ids in date order."""
    created = []
    for day in (3, 1, 7, 5, 2, 6, 4):
        created.append((day, fhir.create({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "1558-6"}]}, "subject": ref(town["wang"]),
            "effectiveDateTime": f"2024-04-0{day}T07:30:00+08:00",
            "valueQuantity": {"value": 100 + day, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
        })["id"]))
    return [oid for _, oid in sorted(created)]


def test_paging_with_next_links_has_no_duplicates_or_gaps(fhir, seven):
    response = fhir.get("Observation", params={"code": "1558-6", "_count": "3", "_sort": "date"})
    pages = []
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        pages.append(match_ids(bundle))
        next_url = link(bundle, "next")
        if not next_url:
            break
        assert len(pages) < 5, "next links do not end"
        response = fhir.http.get(next_url)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == seven


def test_previous_and_first_links_go_back(fhir, seven):
    response = fhir.get("Observation", params={"code": "1558-6", "_count": "3", "_sort": "date"})
    first = response.json()
    assert link(first, "previous") is None
    second = fhir.http.get(link(first, "next")).json()
    third = fhir.http.get(link(second, "next")).json()
    assert link(third, "next") is None
    assert match_ids(fhir.http.get(link(third, "previous")).json()) == seven[3:6]
    assert match_ids(fhir.http.get(link(second, "previous")).json()) == seven[:3]
    assert match_ids(fhir.http.get(link(third, "first")).json()) == seven[:3]
    assert match_ids(fhir.http.get(link(second, "self")).json()) == seven[3:6]


def test_paging_without_sort_is_stable(fhir, seven):
    seen = []
    url = None
    response = fhir.get("Observation", params={"code": "1558-6", "_count": "3"})
    while True:
        bundle = response.json()
        seen += match_ids(bundle)
        url = link(bundle, "next")
        if not url:
            break
        response = fhir.http.get(url)
    assert sorted(seen) == sorted(seven) and len(seen) == 7


def test_page_links_keep_the_filters(fhir, seven, town):
    bp_only = search(fhir, "Observation", ("code", "85354-9"), ("_count", "1"))
    assert len(match_ids(bp_only)) == 1
    second = fhir.http.get(link(bp_only, "next")).json()
    assert set(match_ids(bp_only) + match_ids(second)) == {town["bp_wang"]["id"], town["bp_li"]["id"]}
    assert link(second, "next") is None


# ---- _summary, _elements, _total, _count ------------------------------------------------------


def test_summary_count_gives_the_total_only(fhir, seven):
    bundle = search(fhir, "Observation", ("code", "1558-6"), ("_summary", "count"))
    assert bundle["total"] == 7
    assert "entry" not in bundle


def test_count_zero_gives_the_total_and_no_next_link(fhir, seven):
    bundle = search(fhir, "Observation", ("code", "1558-6"), ("_count", "0"))
    assert bundle["total"] == 7
    assert "entry" not in bundle
    assert link(bundle, "next") is None


def test_total_accurate_counts_beyond_the_page(fhir, seven):
    bundle = search(fhir, "Observation", ("code", "1558-6"), ("_count", "2"), ("_total", "accurate"))
    assert bundle["total"] == 7 and len(match_ids(bundle)) == 2


def test_total_on_a_single_page(fhir, seven):
    assert search(fhir, "Observation", ("code", "1558-6"))["total"] == 7
    assert search(fhir, "Observation", ("code", "0000-0"))["total"] == 0


def test_summary_true_keeps_summary_elements_and_marks_subsetted(fhir, town):
    bundle = search(fhir, "Patient", ("_id", town["wang"]["id"]), ("_summary", "true"))
    (patient,) = [e["resource"] for e in bundle["entry"]]
    assert patient["name"][0]["text"] == "王秀英" and patient["birthDate"] == "1950-01-01"
    assert "maritalStatus" not in patient and "contact" not in patient
    assert SUBSETTED in {t.get("code") for t in patient["meta"]["tag"]}


def test_summary_true_on_observations_drops_notes(fhir, town):
    bundle = search(fhir, "Observation", ("code", "85354-9"), ("_summary", "true"))
    for entry in bundle["entry"]:
        assert "note" not in entry["resource"] and "component" in entry["resource"]
        assert SUBSETTED in {t.get("code") for t in entry["resource"]["meta"]["tag"]}


def test_elements_keeps_only_what_was_asked(fhir, town):
    bundle = search(fhir, "Patient", ("_id", town["wang"]["id"]), ("_elements", "identifier,name"))
    (patient,) = [e["resource"] for e in bundle["entry"]]
    assert set(patient) == {"resourceType", "id", "meta", "identifier", "name"}
    assert SUBSETTED in {t.get("code") for t in patient["meta"]["tag"]}


def test_elements_on_observations(fhir, town):
    bundle = search(fhir, "Observation", ("_id", town["bp_wang"]["id"]), ("_elements", "subject"))
    (obs,) = [e["resource"] for e in bundle["entry"]]
    assert obs["subject"] == ref(town["wang"]) and "code" in obs  # code is mandatory
    assert not {"component", "note", "effectiveDateTime", "encounter"} & set(obs)


def test_elements_keeps_mandatory_elements(fhir, town):  # complex (code) and primitive (status)
    bundle = search(fhir, "Observation", ("_id", town["bp_wang"]["id"]), ("_elements", "subject"))
    (obs,) = [e["resource"] for e in bundle["entry"]]
    assert set(obs) == {"resourceType", "id", "meta", "subject", "status", "code"}


# ---- _id, _lastUpdated, _tag, _profile, _security ---------------------------------------------


def test_id(fhir, town):
    assert set(match_ids(search(fhir, "Patient", ("_id", f"{town['wang']['id']},{town['li']['id']}")))) == {
        town["wang"]["id"], town["li"]["id"]}
    assert match_ids(search(fhir, "Patient", ("_id", town["li"]["id"]))) == [town["li"]["id"]]
    assert match_ids(search(fhir, "Patient", ("_id", town["bp_wang"]["id"]))) == []  # an Observation's id


def test_last_updated_around_a_write(fhir, town):
    before = fhir.create({"resourceType": "Patient", "name": [{"family": "陈", "given": ["静"]}]})
    time.sleep(0.02)
    after = fhir.create({"resourceType": "Patient", "name": [{"family": "陈", "given": ["明"]}]})
    moment = before["meta"]["lastUpdated"]
    assert match_ids(search(fhir, "Patient", ("family", "陈"), ("_lastUpdated", f"gt{moment}"))) == [after["id"]]
    assert match_ids(search(fhir, "Patient", ("family", "陈"), ("_lastUpdated", f"le{moment}"))) == [before["id"]]
    assert match_ids(search(fhir, "Patient", ("family", "陈"), ("_lastUpdated", moment))) == [before["id"]]
    # an update moves the resource past the moment
    time.sleep(0.02)
    fhir.put(f"Patient/{before['id']}", json={**before, "gender": "female"})
    assert set(match_ids(search(fhir, "Patient", ("family", "陈"), ("_lastUpdated", f"gt{moment}")))) == {
        before["id"], after["id"]}
    assert match_ids(search(fhir, "Patient", ("family", "陈"), ("_lastUpdated", "lt2000"))) == []


def test_tag_profile_security(fhir, town):
    tagged = fhir.create({
        "resourceType": "Patient", "name": [{"family": "赵", "given": ["敏"]}],
        "meta": {"tag": [{"system": TAGS, "code": "htn-registry"}], "profile": [CN_PATIENT],
                 "security": [{"system": CONFIDENTIALITY, "code": "R"}]},
    })
    assert match_ids(search(fhir, "Patient", ("_tag", f"{TAGS}|htn-registry"))) == [tagged["id"]]
    assert match_ids(search(fhir, "Patient", ("_tag", "htn-registry"))) == [tagged["id"]]
    assert match_ids(search(fhir, "Patient", ("_tag", f"{TAGS}|dm-registry"))) == []
    assert match_ids(search(fhir, "Patient", ("_profile", CN_PATIENT))) == [tagged["id"]]
    assert match_ids(search(fhir, "Patient", ("_security", f"{CONFIDENTIALITY}|R"))) == [tagged["id"]]
    assert set(match_ids(search(fhir, "Patient", ("_security:not", f"{CONFIDENTIALITY}|R")))) == {
        town["wang"]["id"], town["li"]["id"]}


# ---- POST _search -----------------------------------------------------------------------------


def test_post_search_with_a_form_body(fhir, town):
    response = fhir.http.post("/fhir/Observation/_search", data={"code": "85354-9", "patient.name": "王"})
    assert response.status_code == 200, response.text
    assert match_ids(response.json()) == [town["bp_wang"]["id"]]


def test_post_search_combines_query_and_body(fhir, town):
    response = fhir.http.post("/fhir/Observation/_search?code=85354-9",
                              data={"component-code-value-quantity": "8462-4$gt93"})
    assert response.status_code == 200, response.text
    assert match_ids(response.json()) == [town["bp_wang"]["id"]]


def test_post_search_with_a_json_body_is_400(fhir, town):
    response = fhir.http.post("/fhir/Observation/_search", json={"code": "85354-9"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


# ---- unknown and malformed parameters ---------------------------------------------------------


def test_unknown_parameter_is_reported_and_the_rest_applied(fhir, town):
    bundle = search(fhir, "Patient", ("shoe-size", "42"), ("name", "王"))
    assert match_ids(bundle) == [town["wang"]["id"]]
    (outcome,) = outcomes(bundle)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "shoe-size" in outcome["issue"][0]["diagnostics"]
    assert outcome["issue"][0]["severity"] in ("warning", "information")


def test_unknown_sort_key_is_reported_and_the_search_still_runs(fhir, town):
    bundle = search(fhir, "Patient", ("_sort", "shoe-size,-birthdate"))
    assert match_ids(bundle) == [town["li"]["id"], town["wang"]["id"]]
    assert "shoe-size" in outcomes(bundle)[0]["issue"][0]["diagnostics"]


def test_unknown_parameter_with_strict_handling_is_400(fhir, town):
    response = fhir.get("Patient", params={"shoe-size": "42", "name": "王"}, headers={"Prefer": "handling=strict"})
    assert response.status_code == 400
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and "shoe-size" in body["issue"][0]["diagnostics"]


def test_known_parameters_with_strict_handling_are_fine(fhir, town):
    response = fhir.get("Patient", params={"name": "王"}, headers={"Prefer": "handling=strict"})
    assert response.status_code == 200
    assert match_ids(response.json()) == [town["wang"]["id"]]


@pytest.mark.parametrize(("rtype", "name", "value"), [
    ("Observation", "date", "notadate"),
    ("Patient", "birthdate", "2024-02-30"),
    ("Observation", "value-quantity", "abc"),
    ("Observation", "value-quantity", "gt7|mmol/L"),
    ("Observation", "component-code-value-quantity", "8462-4"),  # composite without $
    ("Observation", "code-value-quantity", "1558-6$gt100$mg"),
    ("Observation", "code", "a|b|c"),
    ("RiskAssessment", "probability", "high"),
    ("Patient", "_count", "-1"),
    ("Patient", "_count", "ten"),
    ("Observation", "_sort", "code-value-quantity"),
    ("Patient", "_summary", "everything"),
    ("Patient", "_include", "Patient:gender"),
    ("Patient", "name:fuzzy", "王"),
    ("Patient", "active:missing", "maybe"),
    ("Patient", "_lastUpdated", "recently"),
])
def test_malformed_value_of_a_known_parameter_is_400(fhir, town, rtype, name, value):
    response = fhir.get(rtype, params={name: value})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "error"
    assert name.split(":")[0] in body["issue"][0]["diagnostics"]


HOSTILE = [
    "' OR 1=1 --",
    "'; DROP TABLE resource; --",
    "王\") OR (\"1\"=\"1",
    "%",
    "_",
    "\\",
    "\\,\\$\\|",
    "x" * 5000,
    "王" * 3000,
    "🩺💊🏥",
    "\u202e\u0644\u0627",
    "ＡＢＣ１２３",
    "\ud7ff\ue000\uffff",
    "1" * 400,
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("name", [
    "name", "name:exact", "name:contains", "identifier", "gender:not", "_id", "organization",
    "organization:identifier", "_profile", "birthdate", "organization:Organization.name",
    "_has:Observation:patient:code",
])
def test_hostile_values_never_break_the_server(fhir, town, name, value):
    response = fhir.get("Patient", params={name: value})
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        everyone = {town["wang"]["id"], town["li"]["id"]}
        assert set(match_ids(response.json())) == (everyone if name.endswith(":not") else set())
    else:
        assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("query", [
    "name=%00", "name=a%00b", "%00=1", "identifier=%00|x", "birthdate=ge%00",
    "value-quantity=1e99999999999", "birthdate=ap9999", "birthdate=ap0001", "birthdate=gt9999-12-31",
    "birthdate=9999-12-31T23:59:59-08:00", "_count=99999999999999999999", "_offset=99999999999",
    "_sort=-", "_sort=,,", "name=" + ",".join(str(i) for i in range(500)),
    "organization:Organization.partof.partof.partof.partof.partof.partof.partof.name=x",
    "_has:Patient:link:" * 12 + "name=x", "_elements=" + "a," * 500, "_include=*:*",
    "_revinclude=*", "name:=x", ":=x", "=x", "_has=x", "_has:::=x",
])
def test_hostile_queries_never_break_the_server(fhir, town, query):
    response = fhir.get(f"Patient?{query}")
    assert response.status_code < 500, response.text
    assert response.json()["resourceType"] in ("Bundle", "OperationOutcome")


def test_nul_in_a_value_is_400(fhir, town):
    response = fhir.get("Patient?name=%E7%8E%8B%00")
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_long_values_in_indexed_elements_are_stored_and_found(fhir, town):
    # index columns have widths (PostgreSQL refuses longer values): values are cut, on write and search
    system, number = "urn:oid:2.16.156.10011.1.3." + "9" * 300, "1" * 300
    unit_system, unit = "http://county.example.cn/units/" + "u" * 300, "包" * 100
    patient = fhir.create({"resourceType": "Patient", "identifier": [{
        "system": system, "value": number,
        "type": {"coding": [{"system": "http://county.example.cn/" + "t" * 300, "code": "T" * 100}]}}]})
    obs = fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "吸烟量"},
                       "subject": {"type": "Patient" * 20, "identifier": {"system": system, "value": number}},
                       "valueQuantity": {"value": 3, "unit": unit, "system": unit_system, "code": unit}})
    assert match_ids(search(fhir, "Patient", ("identifier", f"{system}|{number}"))) == [patient["id"]]
    assert match_ids(search(fhir, "Observation", ("subject:identifier", f"{system}|{number}"))) == [obs["id"]]
    assert match_ids(search(fhir, "Observation", ("value-quantity", f"3|{unit_system}|{unit}"))) == [obs["id"]]


def test_sql_injection_is_just_a_string(fhir, town):
    family = "O'Brien'); --"
    irish = fhir.create({"resourceType": "Patient", "name": [{"family": family}]})
    assert match_ids(search(fhir, "Patient", ("family", family))) == [irish["id"]]
    assert match_ids(search(fhir, "Patient", ("family", "O' OR '1'='1"))) == []
    assert len(match_ids(search(fhir, "Patient"))) == 3  # nothing was dropped


# ---- deleted resources ------------------------------------------------------------------------


def test_deleted_resources_are_never_found(fhir, town):
    wang, li = town["wang"]["id"], town["li"]["id"]
    assert fhir.delete(f"Patient/{wang}").status_code == 200
    assert fhir.delete(f"Observation/{town['bp_li']['id']}").status_code == 200

    assert match_ids(search(fhir, "Patient", ("name", "王"))) == []
    assert match_ids(search(fhir, "Patient", ("_id", wang))) == []
    assert match_ids(search(fhir, "Patient", ("identifier", f"{RID}|110101195001011234"))) == []
    assert match_ids(search(fhir, "Patient")) == [li]
    assert search(fhir, "Patient", ("_summary", "count"))["total"] == 1
    assert search(fhir, "Patient", ("_count", "1"), ("_total", "accurate"))["total"] == 1
    # chains and _has do not go through deleted resources
    assert match_ids(search(fhir, "Observation", ("patient.name", "王"))) == []
    assert match_ids(search(fhir, "Observation", ("code", "85354-9"))) == [town["bp_wang"]["id"]]
    assert match_ids(search(fhir, "Patient", ("_has:Observation:patient:code", "85354-9"))) == []
    assert match_ids(search(fhir, "Organization", ("_has:Patient:organization:name", "王"))) == []
    # includes do not bring them back
    bundle = search(fhir, "Observation", ("_id", town["bp_wang"]["id"]), ("_include", "Observation:subject"))
    assert include_ids(bundle) == set()
    bundle = search(fhir, "Patient", ("_id", li), ("_revinclude", "Observation:patient"))
    assert include_ids(bundle) == set()


def test_a_resource_found_again_after_being_recreated(fhir, town):
    wang = town["wang"]
    fhir.delete(f"Patient/{wang['id']}")
    assert match_ids(search(fhir, "Patient", ("name", "王"))) == []
    body = {k: v for k, v in wang.items() if k != "meta"}
    assert fhir.put(f"Patient/{wang['id']}", json=body).status_code in (200, 201)
    assert match_ids(search(fhir, "Patient", ("name", "王"))) == [wang["id"]]


def test_an_update_reindexes(fhir, town):
    wang = town["wang"]
    fhir.put(f"Patient/{wang['id']}", json={**wang, "name": [{"family": "汪", "given": ["秀英"]}]})
    assert match_ids(search(fhir, "Patient", ("family", "王"))) == []
    assert match_ids(search(fhir, "Patient", ("family", "汪"))) == [wang["id"]]
