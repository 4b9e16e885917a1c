"""The terminology service on the shipped files and on small hand-made resources."""

from __future__ import annotations

import pytest

from fhir_server.errors import NotFound, Unprocessable
from fhir_server.terminology import TerminologyService

from terminology_urls import ADMINISTRATIVE_GENDER, BASE, ICD10, LOINC, SEX, SEX_MAP, cs, vs


# ---- lookup ---------------------------------------------------------------------------------
def test_lookup_gives_the_english_display_and_the_chinese_designation(terminology):
    found = terminology.lookup(cs("follow-up-visit-mode"), "2")
    assert found.display == "Home visit"
    assert [(d.language, d.value) for d in found.designations] == [("zh-CN", "家庭")]


def test_lookup_in_chinese_and_of_a_loinc_code_of_the_fragment(terminology):
    assert terminology.lookup(LOINC, "4548-4", display_language="zh-CN").display == "糖化血红蛋白"
    assert terminology.lookup(LOINC, "4548-4", display_language="zh").display == "糖化血红蛋白"
    assert terminology.lookup(LOINC, "4548-4").display == "Hemoglobin A1c/Hemoglobin.total in Blood"


def test_lookup_of_an_unknown_code_or_system_is_not_found(terminology):
    with pytest.raises(NotFound, match="only a fragment"):
        terminology.lookup(LOINC, "1234-5")
    with pytest.raises(NotFound, match="not in the code system"):
        terminology.lookup(cs("follow-up-visit-mode"), "4")
    with pytest.raises(NotFound, match="not known"):
        terminology.lookup("http://snomed.info/sct", "38341003")


# ---- validate-code --------------------------------------------------------------------------
def test_a_code_of_the_value_set_is_valid_with_its_english_or_chinese_display(terminology):
    for display in (None, "Controlled", "控制满意"):
        answer = terminology.validate_code(vs("follow-up-classification"), cs("follow-up-classification"), "1", display)
        assert answer.result is True, answer.message
        assert answer.display == "Controlled"


def test_a_wrong_display_a_wrong_code_and_a_wrong_system_are_invalid(terminology):
    wrong_display = terminology.validate_code(vs("follow-up-visit-mode"), cs("follow-up-visit-mode"), "1", "电话")
    assert wrong_display.result is False
    assert "'Clinic visit' or '门诊'" in wrong_display.message
    wrong_code = terminology.validate_code(vs("follow-up-visit-mode"), cs("follow-up-visit-mode"), "4")
    assert wrong_code.result is False and wrong_code.unknown_system is None
    assert "not in the value set" in wrong_code.message
    wrong_system = terminology.validate_code(vs("follow-up-visit-mode"), cs("salt-intake"), "1")
    assert wrong_system.result is False


def test_without_a_system_the_value_set_must_identify_one(terminology):
    assert terminology.validate_code(vs("blood-pressure-grade"), None, "grade-2").result is True
    assert terminology.validate_code(vs("blood-pressure-grade"), None, "grade-4").result is False


def test_a_loinc_code_outside_the_fragment_cannot_be_checked_and_says_so(terminology):
    answer = terminology.validate_code(vs("loinc-code"), LOINC, "1234-5")
    assert answer.result is False
    assert answer.unknown_system == LOINC
    assert "holds only in part" in answer.message
    inside = terminology.validate_code(vs("loinc-code"), LOINC, "8480-6")
    assert inside.result is True and inside.display == "Systolic blood pressure"


def test_an_enumerated_subset_refuses_other_loinc_codes_outright(terminology):
    answer = terminology.validate_code(vs("fasting-glucose-code"), LOINC, "2345-7")
    assert answer.result is False and answer.unknown_system is None
    assert terminology.validate_code(vs("fasting-glucose-code"), LOINC, "14771-0").result is True


def test_imported_value_sets_are_united(terminology):
    lab = vs("chronic-disease-lab-code")
    for code in ("14771-0", "4548-4", "22748-8", "14682-9", "14933-6"):
        assert terminology.validate_code(lab, LOINC, code).result is True, code
    assert terminology.validate_code(lab, LOINC, "8480-6").result is False
    managed = vs("chronic-disease-condition-code")
    assert terminology.validate_code(managed, ICD10, "E11.9").result is True
    assert terminology.validate_code(managed, ICD10, "E10.9").result is False


def test_a_codeable_concept_is_valid_when_one_coding_is(terminology):
    codings = [{"system": "http://example.org/local", "code": "x"}, {"system": LOINC, "code": "1558-6"}]
    assert terminology.validate_codings(vs("fasting-glucose-code"), codings).result is True
    assert terminology.validate_codings(vs("fasting-glucose-code"), codings[:1]).result is False
    assert terminology.validate_codings(vs("fasting-glucose-code"), []).result is False


def test_an_unknown_value_set_is_not_found(terminology):
    assert not terminology.has_value_set(vs("no-such-set"))
    with pytest.raises(NotFound):
        terminology.validate_code(vs("no-such-set"), LOINC, "8480-6")


def test_a_versioned_canonical_finds_the_value_set(terminology):
    assert terminology.validate_code(vs("follow-up-visit-mode") + "|0.1.0", cs("follow-up-visit-mode"), "3").result is True


# ---- expand ---------------------------------------------------------------------------------
def _codes(expansion: dict) -> list[str]:
    return [c["code"] for c in expansion["expansion"].get("contains", [])]


def test_expand_lists_the_members_in_order_with_the_total(terminology):
    expansion = terminology.expand(vs("cardiovascular-risk-level"))
    assert _codes(expansion) == ["low", "medium", "high", "very-high"]
    assert expansion["expansion"]["total"] == 4
    assert expansion["url"] == vs("cardiovascular-risk-level")


def test_a_chinese_filter_matches_chinese_designations(terminology):
    expansion = terminology.expand(vs("vital-sign-code"), filter="血压", display_language="zh-CN")
    assert _codes(expansion) == ["85354-9"]
    assert expansion["expansion"]["contains"][0]["display"] == "血压"
    assert _codes(terminology.expand(vs("vital-sign-code"), filter="压")) == ["85354-9", "8480-6", "8462-4"]


def test_an_english_filter_matches_every_word_case_insensitively(terminology):
    assert _codes(terminology.expand(vs("vital-sign-code"), filter="BODY w")) == ["29463-7"]
    assert _codes(terminology.expand(vs("hypertension-symptom"), filter="vision")) == ["4"]


def test_a_filter_matches_codes(terminology):
    assert _codes(terminology.expand(vs("type-2-diabetes-condition-code"), filter="e11.9")) == ["E11.9"]


def test_count_and_offset_page_the_expansion(terminology):
    first = terminology.expand(vs("ethnicity"), count=10)
    second = terminology.expand(vs("ethnicity"), count=10, offset=10)
    assert _codes(first) == [f"{n:02d}" for n in range(1, 11)]
    assert _codes(second) == [f"{n:02d}" for n in range(11, 21)]
    assert first["expansion"]["total"] == second["expansion"]["total"] == 58
    assert second["expansion"]["offset"] == 10


def test_designations_are_included_on_request(terminology):
    plain = terminology.expand(vs("salt-intake"))
    assert "designation" not in plain["expansion"]["contains"][0]
    rich = terminology.expand(vs("salt-intake"), include_designations=True)
    assert rich["expansion"]["contains"][2]["designation"] == [{"language": "zh-CN", "value": "重"}]


def test_a_value_set_over_all_of_loinc_cannot_be_expanded(terminology):
    with pytest.raises(Unprocessable, match="only in part"):
        terminology.expand(vs("loinc-code"))


# ---- translate ------------------------------------------------------------------------------
LAB = cs("county-hospital-lab")


def test_translate_gb_sex_to_administrative_gender(terminology):
    result = terminology.translate("2", SEX, url=SEX_MAP)
    assert result.result is True
    assert [(m.code, m.equivalence) for m in result.matches] == [("female", "equivalent")]
    not_stated = terminology.translate("9", SEX)
    assert [(m.code, m.equivalence) for m in not_stated.matches] == [("unknown", "wider")]


def test_translate_in_reverse_swaps_wider_and_narrower(terminology):
    result = terminology.translate("unknown", ADMINISTRATIVE_GENDER, reverse=True)
    assert sorted((m.code, m.equivalence) for m in result.matches) == [("0", "equivalent"), ("9", "narrower")]
    assert {m.system for m in result.matches} == {SEX}


def test_translate_a_local_lab_code_to_loinc(terminology):
    result = terminology.translate("CREA", LAB, target_system=LOINC)
    assert result.result is True
    assert [(m.system, m.code) for m in result.matches] == [(LOINC, "14682-9")]
    assert terminology.translate("CREA", LAB, target_system="http://snomed.info/sct").result is False


def test_an_unmatched_lab_code_is_a_false_result_with_the_table_comment(terminology):
    result = terminology.translate("GLU-2H", LAB)
    assert result.result is False
    assert [m.equivalence for m in result.matches] == ["unmatched"]
    assert "lab manager" in result.message


def test_translate_chooses_maps_by_source_and_target_value_sets(terminology):
    assert terminology.translate("1", SEX, source=vs("gb-t-2261-1-sex")).result is True
    assert terminology.translate("1", SEX, source=vs("county-hospital-lab")).result is False
    with pytest.raises(NotFound):
        terminology.translate("1", SEX, url=f"{BASE}/ConceptMap/none")


# ---- loading --------------------------------------------------------------------------------
def _value_set(url: str, compose: dict) -> dict:
    return {"resourceType": "ValueSet", "id": url.rsplit("/", 1)[1], "url": url, "status": "active",
            "compose": compose}


def test_exclude_removes_codes_and_an_intersection_keeps_the_common_ones(terminology):
    service = TerminologyService([
        *terminology.resources,
        _value_set("http://x/a", {"include": [{"system": cs("blood-pressure-grade")}],
                                  "exclude": [{"system": cs("blood-pressure-grade"), "concept": [{"code": "normal"}]}]}),
        _value_set("http://x/b", {"include": [{"valueSet": ["http://x/a", vs("blood-pressure-grade")],
                                               "system": cs("blood-pressure-grade"),
                                               "concept": [{"code": "normal"}, {"code": "grade-3"}]}]}),
    ])
    assert len(service.expand("http://x/a")["expansion"]["contains"]) == 4
    assert _codes(service.expand("http://x/b")) == ["grade-3"]


def test_a_value_set_that_includes_itself_or_uses_a_filter_is_refused_at_load():
    with pytest.raises(Unprocessable, match="includes itself"):
        TerminologyService([_value_set("http://x/loop", {"include": [{"valueSet": ["http://x/loop"]}]})])
    with pytest.raises(Unprocessable, match="filters"):
        TerminologyService([_value_set("http://x/f", {"include": [
            {"system": LOINC, "filter": [{"property": "CLASS", "op": "=", "value": "CHEM"}]}]})])


def test_two_resources_with_one_url_are_refused_at_load():
    with pytest.raises(ValueError, match="Two ValueSet"):
        TerminologyService([_value_set("http://x/a", {}), _value_set("http://x/a", {})])
