"""Search over HTTP, one parameter type at a time, on a small county network.

The data: a county hospital (县人民医院) with a township health centre (城关镇卫生院) and a village
clinic (东风村卫生室) under it; residents 王秀英, 李建国, 张伟 (also written Zhāng Wěi) and 刘芳
with resident identity numbers; blood-pressure panels, fasting glucose in mg/dL and mmol/L,
encounters, hypertension and diabetes diagnoses, a risk assessment and a registry Group.

Every test asserts the exact set of matching ids, so that a search that returns too much fails
as surely as one that returns too little. Query values go through ``params=`` so that ``+``,
``|`` and ``$`` reach the server encoded, as a FHIR client sends them.
"""

from __future__ import annotations

import pytest

BASE = "http://testserver/fhir"
RID = "urn:oid:2.16.156.10011.1.3"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOCAL_UNITS = "http://county.example.cn/fhir/units"


# ---- data -------------------------------------------------------------------------------------


class County:
    """Creates the network through the API and remembers the server-assigned ids by name."""

    def __init__(self, fhir):
        self.fhir = fhir
        self.id: dict[str, str] = {}

    def add(self, name: str, resource: dict) -> str:
        self.id[name] = self.fhir.create(resource)["id"]
        return self.id[name]

    def ref(self, name: str) -> dict:
        rtype = {"org": "Organization", "pat": "Patient", "enc": "Encounter"}[name.split("_")[0]]
        return {"reference": f"{rtype}/{self.id[name]}"}

    def __call__(self, *names: str) -> set[str]:
        return {self.id[n] for n in names}


def resident(family: str, given: str, number: str, birth: str, **extra) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{
            "type": {"coding": [{"system": V2_0203, "code": "NNCHN"}], "text": "居民身份证"},
            "system": RID, "value": number,
        }],
        "name": [{"use": "official", "family": family, "given": [given], "text": f"{family}{given}"}],
        "birthDate": birth,
        **extra,
    }


def bp_panel(county: County, patient: str, systolic: float, diastolic: float, when: str, **extra) -> dict:
    def component(code: str, display: str, value: float) -> dict:
        return {"code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
    return {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}],
                 "text": "血压"},
        "subject": county.ref(patient), "effectiveDateTime": when,
        "component": [component("8480-6", "Systolic blood pressure", systolic),
                      component("8462-4", "Diastolic blood pressure", diastolic)],
        **extra,
    }


def glucose(county: County, patient: str, loinc: str, value: float, unit: str, when: str) -> dict:
    return {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}], "text": "空腹血糖"},
        "subject": county.ref(patient), "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


@pytest.fixture
def county(fhir) -> County:
    c = County(fhir)
    c.add("org_county", {"resourceType": "Organization", "name": "县人民医院",
                         "identifier": [{"system": "urn:oid:2.16.156.10011.1.5", "value": "PDY00001"}]})
    c.add("org_town", {"resourceType": "Organization", "name": "城关镇卫生院", "partOf": c.ref("org_county")})
    c.add("org_village", {"resourceType": "Organization", "name": "东风村卫生室", "partOf": c.ref("org_town")})

    c.add("pat_wang", resident("王", "秀英", "110101195001011234", "1950-01-01", gender="female", active=True,
                               managingOrganization=c.ref("org_village")))
    c.add("pat_li", resident("李", "建国", "110101196203154321", "1962-03-15", gender="male", active=True,
                             managingOrganization=c.ref("org_town")))
    c.add("pat_zhang", {**resident("张", "伟", "110101197001010011", "1970", gender="male", active=False,
                                   managingOrganization=c.ref("org_county")),
                        "name": [{"family": "张", "given": ["伟"]}, {"family": "Zhāng", "given": ["Wěi"]}]})
    c.add("pat_liu", resident("刘", "芳", "11010119850601002X", "1985-06", gender="female"))  # no active element

    c.add("enc_wang", {"resourceType": "Encounter", "status": "finished",
                       "class": {"system": ACT_CODE, "code": "AMB"}, "subject": c.ref("pat_wang"),
                       "serviceProvider": c.ref("org_village"),
                       "period": {"start": "2024-03-10T09:00:00+08:00", "end": "2024-03-10T10:00:00+08:00"}})
    c.add("enc_li", {"resourceType": "Encounter", "status": "in-progress",
                     "class": {"system": ACT_CODE, "code": "IMP"}, "subject": c.ref("pat_li"),
                     "serviceProvider": c.ref("org_county"), "period": {"start": "2024-03-01"}})
    c.add("enc_old", {"resourceType": "Encounter", "status": "finished",
                      "class": {"system": ACT_CODE, "code": "AMB"}, "subject": c.ref("pat_zhang"),
                      "serviceProvider": c.ref("org_town"),
                      "period": {"start": "2023-12-01", "end": "2023-12-02"}})

    # 185/95: the systolic is high, the diastolic is not
    c.add("bp_wang", bp_panel(c, "pat_wang", 185, 95, "2024-03-10T09:30:00+08:00", encounter=c.ref("enc_wang")))
    c.add("bp_li", bp_panel(c, "pat_li", 200, 120, "2024-03-11", encounter=c.ref("enc_li")))
    c.add("glu_wang", glucose(c, "pat_wang", "1558-6", 140, "mg/dL", "2024-03-10"))  # = 7.8 mmol/L
    c.add("glu_li", glucose(c, "pat_li", "14771-0", 5.2, "mmol/L", "2024-04"))  # = 94 mg/dL
    c.add("glu_zhang", glucose(c, "pat_zhang", "14771-0", 8.1, "mmol/L", "2024-05-20T08:00:00+08:00"))

    for name, patient, code, display in [("cond_wang_htn", "pat_wang", "I10", "特发性(原发性)高血压"),
                                         ("cond_li_dm", "pat_li", "E11.9", "2型糖尿病不伴有并发症"),
                                         ("cond_li_htn", "pat_li", "I10", "特发性(原发性)高血压")]:
        c.add(name, {"resourceType": "Condition", "subject": c.ref(patient),
                     "code": {"coding": [{"system": ICD10, "code": code, "display": display}]}})
    return c


def ids(fhir, rtype: str, *pairs: tuple[str, str]) -> set[str]:
    response = fhir.get(rtype, params=list(pairs))
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert not [e for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"], bundle
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def status(fhir, rtype: str, *pairs: tuple[str, str]) -> int:
    return fhir.get(rtype, params=list(pairs)).status_code


# ---- string -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("王", {"pat_wang"}),
    ("王秀英", {"pat_wang"}),  # family + given as one string
    ("秀英", {"pat_wang"}),  # the given name alone
    ("王秀", {"pat_wang"}),  # starts-with
    ("英", set()),  # not a prefix of any part
    ("zhang", {"pat_zhang"}),  # accents and case folded
    ("ZHĀNG", {"pat_zhang"}),
    ("wei", {"pat_zhang"}),
    ("张伟", {"pat_zhang"}),
    ("李,刘", {"pat_li", "pat_liu"}),
])
def test_string_name_default_is_case_and_accent_insensitive_starts_with(fhir, county, value, expected):
    assert ids(fhir, "Patient", ("name", value)) == county(*expected)


def test_phonetic_is_searched_through_the_name(fhir, county):
    assert ids(fhir, "Patient", ("phonetic", "zhang")) == county("pat_zhang")
    assert ids(fhir, "Patient", ("phonetic:exact", "王秀英")) == county("pat_wang")
    assert ids(fhir, "Patient", ("phonetic:missing", "true")) == set()


def test_string_family_and_given(fhir, county):
    assert ids(fhir, "Patient", ("family", "王")) == county("pat_wang")
    assert ids(fhir, "Patient", ("given", "建国")) == county("pat_li")
    assert ids(fhir, "Patient", ("family", "秀英")) == set()


def test_string_exact(fhir, county):
    assert ids(fhir, "Patient", ("name:exact", "王秀英")) == county("pat_wang")
    assert ids(fhir, "Patient", ("name:exact", "王秀")) == set()
    assert ids(fhir, "Patient", ("family:exact", "Zhāng")) == county("pat_zhang")
    assert ids(fhir, "Patient", ("family:exact", "zhang")) == set()


def test_string_contains(fhir, county):
    assert ids(fhir, "Patient", ("name:contains", "秀")) == county("pat_wang")
    assert ids(fhir, "Patient", ("name:contains", "建")) == county("pat_li")
    assert ids(fhir, "Organization", ("name:contains", "卫生")) == county("org_town", "org_village")
    assert ids(fhir, "Organization", ("name:contains", "%")) == set()  # LIKE wildcards are literal


def test_string_organization_name(fhir, county):
    assert ids(fhir, "Organization", ("name", "城关")) == county("org_town")
    assert ids(fhir, "Organization", ("name", "卫生")) == set()


# ---- token ------------------------------------------------------------------------------------


def test_token_code_alone_and_with_system(fhir, county):
    assert ids(fhir, "Observation", ("code", "85354-9")) == county("bp_wang", "bp_li")
    assert ids(fhir, "Observation", ("code", f"{LOINC}|85354-9")) == county("bp_wang", "bp_li")
    assert ids(fhir, "Observation", ("code", "http://snomed.info/sct|85354-9")) == set()
    assert ids(fhir, "Condition", ("code", f"{ICD10}|I10")) == county("cond_wang_htn", "cond_li_htn")
    assert ids(fhir, "Condition", ("code", "I10,E11.9")) == county("cond_wang_htn", "cond_li_htn", "cond_li_dm")


def test_token_system_only_and_no_system(fhir, county):
    local = county.add("obs_local", {"resourceType": "Observation", "status": "final",
                                     "code": {"coding": [{"code": "XY-01", "display": "随访问卷"}]},
                                     "subject": county.ref("pat_wang")})
    assert ids(fhir, "Patient", ("identifier", f"{RID}|")) == county("pat_wang", "pat_li", "pat_zhang", "pat_liu")
    assert ids(fhir, "Observation", ("code", "|XY-01")) == {local}
    assert ids(fhir, "Observation", ("code", "|85354-9")) == set()  # that one has a system
    assert ids(fhir, "Observation", ("code", "XY-01")) == {local}


def test_token_identifier(fhir, county):
    assert ids(fhir, "Patient", ("identifier", f"{RID}|110101195001011234")) == county("pat_wang")
    assert ids(fhir, "Patient", ("identifier", "110101196203154321")) == county("pat_li")
    assert ids(fhir, "Patient", ("identifier", "urn:oid:2.16.156.10011.1.4|110101196203154321")) == set()
    assert ids(fhir, "Patient", ("identifier", "11010119500101")) == set()  # tokens are not prefixes


def test_token_identifier_of_type(fhir, county):
    assert ids(fhir, "Patient", ("identifier:of-type", f"{V2_0203}|NNCHN|11010119850601002X")) == county("pat_liu")
    assert ids(fhir, "Patient", ("identifier:of-type", f"{V2_0203}|MR|11010119850601002X")) == set()
    assert status(fhir, "Patient", ("identifier:of-type", "NNCHN|11010119850601002X")) == 400


def test_token_not(fhir, county):
    assert ids(fhir, "Patient", ("gender:not", "male")) == county("pat_wang", "pat_liu")
    assert ids(fhir, "Condition", ("code:not", "I10")) == county("cond_li_dm")
    # :not also finds resources without any value
    assert ids(fhir, "Patient", ("active:not", "true")) == county("pat_zhang", "pat_liu")


def test_token_text(fhir, county):
    assert ids(fhir, "Observation", ("code:text", "blood pressure")) == county("bp_wang", "bp_li")
    assert ids(fhir, "Condition", ("code:text", "糖尿病")) == county("cond_li_dm")
    assert ids(fhir, "Patient", ("identifier:text", "身份证")) == county("pat_wang", "pat_li", "pat_zhang", "pat_liu")


def test_token_boolean(fhir, county):
    assert ids(fhir, "Patient", ("active", "true")) == county("pat_wang", "pat_li")
    assert ids(fhir, "Patient", ("active", "false")) == county("pat_zhang")


def test_missing(fhir, county):
    assert ids(fhir, "Patient", ("active:missing", "true")) == county("pat_liu")
    assert ids(fhir, "Patient", ("active:missing", "false")) == county("pat_wang", "pat_li", "pat_zhang")
    assert ids(fhir, "Observation", ("value-quantity:missing", "true")) == county("bp_wang", "bp_li")
    assert ids(fhir, "Observation", ("encounter:missing", "false")) == county("bp_wang", "bp_li")
    assert ids(fhir, "Patient", ("organization:missing", "true")) == county("pat_liu")
    assert ids(fhir, "Observation", ("component-code-value-quantity:missing", "false")) == county("bp_wang", "bp_li")
    assert status(fhir, "Patient", ("active:missing", "perhaps")) == 400


# ---- date -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("1970", {"pat_zhang"}),  # a year matches a year
    ("1970-05-01", set()),  # a birth year is not contained in one day
    ("eq1962", {"pat_li"}),
    ("1962-03-15", {"pat_li"}),
    ("ne1950-01-01", {"pat_li", "pat_zhang", "pat_liu"}),
    ("gt1962-03-15", {"pat_zhang", "pat_liu"}),
    ("ge1962-03-15", {"pat_li", "pat_zhang", "pat_liu"}),
    ("lt1962-03", {"pat_wang"}),
    ("le1962-03", {"pat_wang", "pat_li"}),
    ("sa1962", {"pat_zhang", "pat_liu"}),
    ("eb1970", {"pat_wang", "pat_li"}),
    ("ap1985", {"pat_liu"}),
    ("1985-06", {"pat_liu"}),  # month precision
    ("1985-06-15", set()),
    ("lt1955,gt1980", {"pat_wang", "pat_liu"}),
])
def test_date_prefixes_on_birthdates_of_different_precision(fhir, county, value, expected):
    assert ids(fhir, "Patient", ("birthdate", value)) == county(*expected)


def test_date_range_by_two_parameters(fhir, county):
    assert ids(fhir, "Patient", ("birthdate", "ge1960"), ("birthdate", "lt1980")) == county("pat_li", "pat_zhang")


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-03-10", {"bp_wang", "glu_wang"}),
    ("2024-03-10T09:30:00+08:00", {"bp_wang"}),  # +08:00 is 01:30 UTC
    ("2024-03-10T01:30:00Z", {"bp_wang"}),
    ("2024-03-10T09:30:00Z", set()),
    ("2024-03", {"bp_wang", "bp_li", "glu_wang"}),
    ("2024-04", {"glu_li"}),
    ("gt2024-03-31", {"glu_li", "glu_zhang"}),
    ("lt2024-03-10T09:31:00+08:00", {"bp_wang", "glu_wang"}),
    ("le2024-03-10T09:29:00+08:00", {"glu_wang"}),  # the whole day of glu_wang starts before
    ("sa2024-03-11", {"glu_li", "glu_zhang"}),
    ("eb2024-03-11", {"bp_wang", "glu_wang"}),
    ("ge2024-05-20T00:00:00Z", {"glu_zhang"}),
    ("2024-05-20", {"glu_zhang"}),  # 08:00 +08:00 is 00:00 UTC on the 20th
    ("ne2024-03", {"glu_li", "glu_zhang"}),
])
def test_date_on_datetimes_with_time_zones(fhir, county, value, expected):
    assert ids(fhir, "Observation", ("date", value)) == county(*expected)


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-03-10", {"enc_wang"}),  # the open-ended stay is not within one day
    ("gt2024-03-10", {"enc_li"}),  # open end: it goes on past the day
    ("lt2024-03-05", {"enc_li", "enc_old"}),
    ("sa2024-03-05", {"enc_wang"}),
    ("eb2024-03-05", {"enc_old"}),
    ("ge2024-03-10T09:30:00+08:00", {"enc_wang", "enc_li"}),
    ("le2024-03-10T08:59:00+08:00", {"enc_li", "enc_old"}),
    ("2023-12", {"enc_old"}),
    ("ne2023-12", {"enc_wang", "enc_li"}),
])
def test_date_on_periods(fhir, county, value, expected):
    assert ids(fhir, "Encounter", ("date", value)) == county(*expected)


# ---- number -----------------------------------------------------------------------------------


def test_number_parameter_exists(server):
    assert server.registry.params_for("RiskAssessment")["probability"].type == "number"


@pytest.mark.parametrize(("value", "expected"), [
    ("100", {"ra_high"}),  # 100 stands for [99.5, 100.5): 99.6 matches
    ("eq100", {"ra_high"}),
    ("99", {"ra_edge"}),
    ("99.4", {"ra_edge"}),
    ("99.5", set()),  # [99.45, 99.55): neither 99.4 nor 99.6
    ("99.40", {"ra_edge"}),
    ("ne100", {"ra_edge", "ra_low"}),
    ("gt99.5", {"ra_high"}),
    ("lt1", {"ra_low"}),
    ("le0.25", {"ra_low"}),
    ("ge99.4", {"ra_high", "ra_edge"}),
    ("ap0.24", {"ra_low"}),
    ("0.25,99.6", {"ra_high", "ra_low"}),
    ("2.5e-1", {"ra_low"}),
])
def test_number_precision_and_prefixes(fhir, county, value, expected):
    for name, probability in [("ra_high", 99.6), ("ra_edge", 99.4), ("ra_low", 0.25)]:
        county.add(name, {"resourceType": "RiskAssessment", "status": "final", "subject": county.ref("pat_wang"),
                          "prediction": [{"outcome": {"text": "十年心血管风险"}, "probabilityDecimal": probability}]})
    assert ids(fhir, "RiskAssessment", ("probability", value)) == county(*expected)


# ---- quantity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (f"gt7|{UCUM}|mmol/L", {"glu_wang", "glu_zhang"}),  # 140 mg/dL of glucose is 7.8 mmol/L
    (f"lt126|{UCUM}|mg/dL", {"glu_li"}),  # 5.2 mmol/L is 94 mg/dL; 8.1 mmol/L is 146 mg/dL
    (f"140|{UCUM}|mg/dL", {"glu_wang"}),
    (f"ge140|{UCUM}|mg/dL", {"glu_wang", "glu_zhang"}),
    (f"le5.2|{UCUM}|mmol/L", {"glu_li"}),
    ("5.2||mmol/L", {"glu_li"}),  # any system
    ("8.1", {"glu_zhang"}),  # the number alone, any unit
    (f"gt1|{UCUM}|g/L", {"glu_wang", "glu_zhang"}),
    (f"ap8|{UCUM}|mmol/L", {"glu_wang", "glu_zhang"}),
    (f"ne5.2|{UCUM}|mmol/L", {"glu_wang", "glu_zhang"}),
    (f"gt7|{UCUM}|kg", set()),  # another dimension
])
def test_quantity_prefixes_and_unit_conversion(fhir, county, value, expected):
    assert ids(fhir, "Observation", ("value-quantity", value)) == county(*expected)


def test_quantity_with_a_non_ucum_unit_is_matched_by_code(fhir, county):
    smoking = county.add("smoking", {
        "resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "8663-7"}]},
        "subject": county.ref("pat_li"),
        "valueQuantity": {"value": 3, "unit": "包/天", "system": LOCAL_UNITS, "code": "pack/d"},
    })
    assert ids(fhir, "Observation", ("value-quantity", f"3|{LOCAL_UNITS}|pack/d")) == {smoking}
    assert ids(fhir, "Observation", ("value-quantity", "gt2||pack/d")) == {smoking}
    assert ids(fhir, "Observation", ("value-quantity", "3|http://other.example.org/units|pack/d")) == set()
    assert ids(fhir, "Observation", ("value-quantity", f"4|{LOCAL_UNITS}|pack/d")) == set()


# ---- composite --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("8480-6$gt180", {"bp_wang", "bp_li"}),
    ("8462-4$gt180", set()),  # 185 is wang's systolic; the diastolic is 95
    ("8462-4$gt100", {"bp_li"}),
    (f"{LOINC}|8462-4$gt90|{UCUM}|mm[Hg]", {"bp_wang", "bp_li"}),
    ("8462-4$lt100,8480-6$ge200", {"bp_wang", "bp_li"}),
    ("8480-6$185", {"bp_wang"}),
])
def test_component_code_value_quantity_matches_within_one_component(fhir, county, value, expected):
    assert ids(fhir, "Observation", ("component-code-value-quantity", value)) == county(*expected)


# ---- combo-*: the resource's own element and its components together (no rows of their own) ----


@pytest.mark.parametrize(("param", "value", "expected"), [
    ("combo-code", "85354-9", {"bp_wang", "bp_li"}),  # the panel's own code
    ("combo-code", f"{LOINC}|8480-6", {"bp_wang", "bp_li"}),  # a component's code
    ("combo-code", "14771-0,1558-6", {"glu_wang", "glu_li", "glu_zhang"}),
    ("combo-code:not", "85354-9", {"glu_wang", "glu_li", "glu_zhang"}),
    ("combo-value-quantity", "gt180", {"bp_wang", "bp_li"}),  # a component's value
    ("combo-value-quantity", f"gt7|{UCUM}|mmol/L", {"glu_wang", "glu_zhang"}),  # the resource's value
    ("combo-code-value-quantity", "8462-4$gt100", {"bp_li"}),  # from one component
    ("combo-code-value-quantity", "8462-4$gt180", set()),  # 185 is wang's systolic, not her diastolic
    ("combo-code-value-quantity", f"14771-0$gt{7}|{UCUM}|mmol/L", {"glu_zhang"}),  # the resource's code and value
    ("combo-code-value-quantity", "85354-9$gt100", set()),  # the panel's code has no value of its own
    ("combo-code-value-quantity:missing", "true", set()),
    ("combo-value-concept:missing", "true", {"bp_wang", "bp_li", "glu_wang", "glu_li", "glu_zhang"}),
])
def test_combo_parameters_search_the_resource_and_its_components(fhir, county, param, value, expected):
    assert ids(fhir, "Observation", (param, value)) == county(*expected)


def test_sort_by_a_combo_parameter(fhir, county):
    response = fhir.get("Observation", params={"combo-value-quantity": "gt0", "_sort": "-combo-value-quantity",
                                               "code": "85354-9"})
    assert [e["resource"]["id"] for e in response.json()["entry"]] == [county.id["bp_li"], county.id["bp_wang"]]


def test_two_composite_filters_may_match_different_components(fhir, county):
    pairs = [("component-code-value-quantity", "8480-6$gt180"), ("component-code-value-quantity", "8462-4$lt100")]
    assert ids(fhir, "Observation", *pairs) == county("bp_wang")


@pytest.mark.parametrize(("value", "expected"), [
    ("1558-6$gt100", {"glu_wang"}),
    (f"{LOINC}|14771-0$gt7|{UCUM}|mmol/L", {"glu_zhang"}),
    ("14771-0$lt7", {"glu_li"}),
    ("1558-6$lt100", set()),
])
def test_code_value_quantity(fhir, county, value, expected):
    assert ids(fhir, "Observation", ("code-value-quantity", value)) == county(*expected)


# ---- reference --------------------------------------------------------------------------------


def test_reference_forms(fhir, county):
    wang = county.id["pat_wang"]
    expected = county("bp_wang", "glu_wang")
    assert ids(fhir, "Observation", ("subject", f"Patient/{wang}")) == expected
    assert ids(fhir, "Observation", ("subject", wang)) == expected  # a bare id
    assert ids(fhir, "Observation", ("subject:Patient", wang)) == expected
    assert ids(fhir, "Observation", ("patient", wang)) == expected
    assert ids(fhir, "Observation", ("subject", f"{BASE}/Patient/{wang}")) == expected  # absolute, this server
    assert ids(fhir, "Observation", ("subject:Group", wang)) == set()
    assert ids(fhir, "Observation", ("subject", f"Group/{wang}")) == set()
    assert ids(fhir, "Observation", ("subject", f"Patient/{wang},Patient/{county.id['pat_zhang']}")) == county(
        "bp_wang", "glu_wang", "glu_zhang")


def test_reference_to_another_server(fhir, county):
    remote = county.add("remote", {"resourceType": "Observation", "status": "final",
                                   "code": {"coding": [{"system": LOINC, "code": "1558-6"}]},
                                   "subject": {"reference": "http://city.example.cn/fhir/Patient/8891"}})
    assert ids(fhir, "Observation", ("subject", "http://city.example.cn/fhir/Patient/8891")) == {remote}
    assert ids(fhir, "Observation", ("subject", "http://city.example.cn/fhir/Patient/8892")) == set()


def test_reference_identifier_on_a_logical_reference(fhir, county):
    logical = county.add("logical", {
        "resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "1558-6"}]},
        "subject": {"type": "Patient", "identifier": {"system": RID, "value": "110101199901010000"}},
        "valueQuantity": {"value": 99, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
    })
    assert ids(fhir, "Observation", ("subject:identifier", f"{RID}|110101199901010000")) == {logical}
    assert ids(fhir, "Observation", ("subject:identifier", "110101199901010000")) == {logical}
    assert ids(fhir, "Observation", ("subject:identifier", f"{RID}|110101195001011234")) == set()


def test_reference_organization_part_of(fhir, county):
    assert ids(fhir, "Organization", ("partof", f"Organization/{county.id['org_county']}")) == county("org_town")
    assert ids(fhir, "Patient", ("organization", county.id["org_town"])) == county("pat_li")


def test_group_member(fhir, county):
    group = county.add("group", {
        "resourceType": "Group", "type": "person", "actual": True, "name": "城关镇高血压患者管理组",
        "managingEntity": county.ref("org_town"),
        "member": [{"entity": county.ref("pat_wang")}, {"entity": county.ref("pat_li")}],
    })
    county.add("group_other", {"resourceType": "Group", "type": "person", "actual": False,
                               "member": [{"entity": county.ref("pat_zhang")}]})
    assert ids(fhir, "Group", ("member", f"Patient/{county.id['pat_wang']}")) == {group}
    assert ids(fhir, "Group", ("actual", "true")) == {group}
    assert ids(fhir, "Patient", ("_has:Group:member:_id", group)) == county("pat_wang", "pat_li")
    assert ids(fhir, "Group", ("managing-entity:Organization.name", "城关")) == {group}


# ---- uri --------------------------------------------------------------------------------------


def test_uri_exact_below_above(fhir, county):
    htn = county.add("q_htn", {"resourceType": "Questionnaire", "status": "active",
                               "url": "http://county.example.cn/fhir/Questionnaire/htn-followup"})
    dm = county.add("q_dm", {"resourceType": "Questionnaire", "status": "active",
                             "url": "http://county.example.cn/fhir/Questionnaire/dm-followup"})
    county.add("q_other", {"resourceType": "Questionnaire", "status": "active",
                           "url": "http://city.example.cn/fhir/Questionnaire/htn-followup"})
    assert ids(fhir, "Questionnaire", ("url", "http://county.example.cn/fhir/Questionnaire/htn-followup")) == {htn}
    assert ids(fhir, "Questionnaire", ("url", "http://county.example.cn/fhir/Questionnaire")) == set()
    assert ids(fhir, "Questionnaire", ("url:below", "http://county.example.cn/fhir")) == {htn, dm}
    assert ids(fhir, "Questionnaire",
               ("url:above", "http://county.example.cn/fhir/Questionnaire/htn-followup/2.0")) == {htn}


def test_uri_above_takes_url_characters_literally(fhir, county):
    v2 = county.add("q_v2", {"resourceType": "Questionnaire", "status": "active",
                             "url": "http://county.example.cn/fhir/Questionnaire/dm_v2"})
    assert ids(fhir, "Questionnaire", ("url:above", "http://county.example.cn/fhir/Questionnaire/dm_v2/r1")) == {v2}
    assert ids(fhir, "Questionnaire", ("url:above", "http://county.example.cn/fhir/Questionnaire/dmXv2/r1")) == set()
    assert ids(fhir, "Questionnaire", ("url:below", "http://county.example.cn/fhir/Questionnaire/dm_")) == {v2}
    assert ids(fhir, "Questionnaire", ("url:below", "http://county.example.cn/fhir/Questionnaire/d%")) == set()


def test_valueset_url_below(fhir, county):
    vs = county.add("vs", {"resourceType": "ValueSet", "status": "active",
                           "url": "http://county.example.cn/fhir/ValueSet/chronic-disease"})
    assert ids(fhir, "ValueSet", ("url:below", "http://county.example.cn/fhir/ValueSet/")) == {vs}
    assert ids(fhir, "ValueSet", ("url:below", "http://county.example.cn/fhir/CodeSystem/")) == set()


# ---- chains -----------------------------------------------------------------------------------


def test_chain_with_type_modifier(fhir, county):
    assert ids(fhir, "Observation", ("subject:Patient.identifier", f"{RID}|110101195001011234")) == county(
        "bp_wang", "glu_wang")
    assert ids(fhir, "Observation", ("subject:Patient.name", "李建国")) == county("bp_li", "glu_li")
    assert ids(fhir, "Observation", ("subject:Patient.birthdate", "lt1960")) == county("bp_wang", "glu_wang")


def test_chain_through_an_ambiguous_reference_is_400(fhir, county):
    response = fhir.get("Observation", params={"subject.name": "王"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "subject" in response.json()["issue"][0]["diagnostics"]


def test_chain_through_a_single_target_reference(fhir, county):
    assert ids(fhir, "Observation", ("patient.name", "王")) == county("bp_wang", "glu_wang")
    assert ids(fhir, "Condition", ("patient.gender", "male")) == county("cond_li_dm", "cond_li_htn")
    assert ids(fhir, "Observation", ("encounter.class", "IMP")) == county("bp_li")


def test_two_level_chains(fhir, county):
    assert ids(fhir, "Observation", ("encounter.service-provider.name", "东风")) == county("bp_wang")
    assert ids(fhir, "Observation", ("patient.organization.name", "县")) == county("glu_zhang")
    assert ids(fhir, "Observation", ("patient.organization.name", "城关")) == county("bp_li", "glu_li")
    # three links: the village clinic is part of the township centre
    assert ids(fhir, "Observation", ("patient.organization.partof.name", "城关")) == county("bp_wang", "glu_wang")


def test_chain_combined_with_a_local_filter(fhir, county):
    pairs = [("patient.name", "王"), ("code", "1558-6")]
    assert ids(fhir, "Observation", *pairs) == county("glu_wang")


def test_reverse_chain(fhir, county):
    assert ids(fhir, "Patient", ("_has:Observation:patient:code", "1558-6")) == county("pat_wang")
    assert ids(fhir, "Patient", ("_has:Observation:subject:code", "14771-0")) == county("pat_li", "pat_zhang")
    assert ids(fhir, "Patient", ("_has:Condition:subject:code", "E11.9")) == county("pat_li")
    assert ids(fhir, "Patient", ("_has:Observation:patient:component-code-value-quantity", "8462-4$gt100")) == county(
        "pat_li")
    assert ids(fhir, "Patient", ("_has:Observation:patient:value-quantity", f"gt7|{UCUM}|mmol/L")) == county(
        "pat_wang", "pat_zhang")


def test_reverse_chain_anded_with_other_filters(fhir, county):
    pairs = [("_has:Condition:subject:code", "I10"), ("_has:Condition:subject:code", "E11.9")]
    assert ids(fhir, "Patient", *pairs) == county("pat_li")
    pairs = [("_has:Condition:subject:code", "I10"), ("gender", "female")]
    assert ids(fhir, "Patient", *pairs) == county("pat_wang")


def test_nested_reverse_chain(fhir, county):
    # organizations whose patients have a molar fasting glucose
    assert ids(fhir, "Organization", ("_has:Patient:organization:_has:Observation:patient:code", "14771-0")) == county(
        "org_town", "org_county")
    assert ids(fhir, "Organization", ("_has:Patient:organization:_has:Condition:subject:code", "I10")) == county(
        "org_village", "org_town")


def test_chain_and_has_errors(fhir, county):
    assert status(fhir, "Observation", ("code.name", "x")) == 400
    assert status(fhir, "Patient", ("_has:Observation:code:code", "x")) == 400
    assert status(fhir, "Patient", ("_has:Observation", "x")) == 400
    assert status(fhir, "Observation", ("subject:Patient.organization.partof.partof.partof.partof.name", "x")) == 400
