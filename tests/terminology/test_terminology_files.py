"""The shipped terminology files: complete, bilingual, consistent with each other, the demo and the profiles."""

from __future__ import annotations

import hashlib
import json

import pytest

from fhir_server.demo import codes as demo_codes
from fhir_server.settings import PROJECT_ROOT
from fhir_server.terminology import lab_map

from terminology_urls import ADMINISTRATIVE_GENDER, BASE, LAB_MAP, LOINC, SEX, SEX_MAP, cs

TERMINOLOGY_DIR = PROJECT_ROOT / "terminology"


def _of_kind(terminology, kind: str) -> list[dict]:
    """The county's own resources of ``kind`` (not those vendored from the FHIR core package)."""
    return [r for r in terminology.resources if r["resourceType"] == kind and r.get("publisher") == "county-fhir"]


def test_every_concept_has_an_english_display_and_a_chinese_designation(terminology):
    for code_system in _of_kind(terminology, "CodeSystem"):
        assert code_system["count"] == len(code_system["concept"]), code_system["url"]
        for concept in code_system["concept"]:
            assert concept.get("display"), (code_system["url"], concept["code"])
            chinese = [d["value"] for d in concept.get("designation", []) if d.get("language") == "zh-CN"]
            assert chinese, (code_system["url"], concept["code"])


def test_every_enumerated_code_exists_in_its_code_system(terminology):
    for value_set in _of_kind(terminology, "ValueSet"):
        for include in value_set["compose"]["include"]:
            code_system = terminology.code_systems.get(include.get("system"))
            for concept in include.get("concept", []):
                assert code_system is not None, value_set["url"]
                assert code_system.find(concept["code"]), (value_set["url"], concept["code"])


def test_canonical_urls_are_under_the_one_base(terminology):
    external = {LOINC, "http://hl7.org/fhir/sid/icd-10", SEX}
    for kind in ("CodeSystem", "ValueSet", "ConceptMap"):
        for resource in _of_kind(terminology, kind):
            assert resource["url"] in external or resource["url"].startswith(f"{BASE}/{kind}/"), resource["url"]


def test_the_vendored_core_files_are_the_ones_recorded():
    folder = TERMINOLOGY_DIR / "fhir-r4b"
    record = json.loads((folder / "VENDORED.json").read_text())
    assert record["package"] == "hl7.fhir.r4b.core" and record["version"] == "4.3.0"
    on_disk = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*-*.json")}
    assert on_disk == record["files"]


def test_core_required_bindings_are_checked(terminology):
    gender = "http://hl7.org/fhir/ValueSet/administrative-gender|4.3.0"
    assert terminology.validate_code(gender, ADMINISTRATIVE_GENDER, "female").result is True
    assert terminology.validate_code(gender, ADMINISTRATIVE_GENDER, "woman").result is False
    status = "http://hl7.org/fhir/ValueSet/observation-status"
    assert terminology.validate_code(status, "http://hl7.org/fhir/observation-status", "final").result is True


def test_the_lab_map_json_is_what_the_csv_table_generates():
    for path, resource in lab_map.generate(TERMINOLOGY_DIR).items():
        assert (TERMINOLOGY_DIR / path).read_text(encoding="utf-8") == lab_map.render(resource), (
            f"{path} is stale: run python -m fhir_server.terminology.lab_map")


def test_the_generator_rewrites_the_json_from_an_edited_table(tmp_path):
    table = TERMINOLOGY_DIR / lab_map.TABLE
    (tmp_path / "conceptmaps").mkdir()
    (tmp_path / "codesystems").mkdir()
    edited = table.read_text(encoding="utf-8") + "K,血钾,Potassium,mmol/L,6298-4,Potassium [Moles/volume] in Blood,,\n"
    (tmp_path / lab_map.TABLE).write_text(edited, encoding="utf-8")
    lab_map.main(tmp_path)
    code_system = json.loads((tmp_path / lab_map.CODE_SYSTEM_FILE).read_text(encoding="utf-8"))
    assert code_system["concept"][-1]["designation"] == [{"language": "zh-CN", "value": "血钾"}]
    concept_map = json.loads((tmp_path / lab_map.CONCEPT_MAP_FILE).read_text(encoding="utf-8"))
    assert concept_map["group"][0]["element"][-1]["target"] == [
        {"code": "6298-4", "display": "Potassium [Moles/volume] in Blood", "equivalence": "equivalent"}]


def test_the_lab_table_maps_to_loinc_codes_the_server_knows(terminology):
    rows = lab_map.read_table(TERMINOLOGY_DIR / lab_map.TABLE)
    assert len({row["local_code"] for row in rows}) == len(rows)
    for row in rows:
        translation = terminology.translate(row["local_code"], cs("county-hospital-lab"), url=LAB_MAP)
        if row["loinc_code"]:
            assert translation.result, row
            assert terminology.lookup(LOINC, row["loinc_code"]).display == row["loinc_display"]
        else:
            assert not translation.result, row


def test_every_gb_sex_code_maps_to_administrative_gender(terminology):
    for code in terminology.code_systems[SEX].concepts:
        assert terminology.translate(code, SEX, url=SEX_MAP).result, code


def test_every_loinc_and_icd10_code_the_demo_writes_is_known_with_its_chinese_name(terminology):
    written = [(LOINC, code, display) for code, display, _ in demo_codes.LOINC_CODES.values()]
    written += [(demo_codes.ICD10, code, display) for code, display, _ in demo_codes.CONDITIONS.values()]
    for system, code, display in written:
        found = terminology.lookup(system, code)
        assert found.display == display
        assert [d.language for d in found.designations] == ["zh-CN"]


def test_every_local_code_the_demo_writes_is_in_its_code_system(terminology):
    used = [(demo_codes.ENCOUNTER_TYPE, code) for code, _ in demo_codes.ENCOUNTER_TYPES.values()]
    used += [(demo_codes.PRACTITIONER_ROLE, "guide-doctor"), (demo_codes.PRACTITIONER_ROLE, "village-doctor"),
             (demo_codes.CARE_PLAN_CATEGORY, "chronic-disease-management"),
             (demo_codes.GROUP_TYPE, "self-management-group"),
             (demo_codes.GROUP_CHARACTERISTIC, "managed-condition")]
    for system, code in used:
        assert terminology.lookup(system, code).display, (system, code)


def _local_profile_bindings() -> list[tuple[str, str]]:
    found = []
    for path in sorted((PROJECT_ROOT / "profiles" / "local").glob("*.json")):
        definition = json.loads(path.read_text(encoding="utf-8"))
        for element in definition.get("differential", {}).get("element", []):
            url = element.get("binding", {}).get("valueSet", "")
            if url.startswith(BASE):
                found.append((definition["id"], url))
    return found


@pytest.mark.parametrize(("profile", "value_set"), _local_profile_bindings())
def test_every_county_value_set_a_profile_binds_to_is_shipped(terminology, profile, value_set):
    assert terminology.has_value_set(value_set), f"{profile} binds to {value_set}, which is not shipped"
