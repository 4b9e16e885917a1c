"""ProfileValidator rules the example files do not show on their own: binding strengths,
value sets the server does not hold, foreign extensions, profile selection and caching."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from fhir_server.terminology import TerminologyService
from fhir_server.validation import ProfileValidator

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "profiles" / "local"
SD = "https://county-fhir.example.org/fhir/StructureDefinition/"


@pytest.fixture(scope="module")
def terminology() -> TerminologyService:
    return TerminologyService.load(ROOT / "terminology")


@pytest.fixture(scope="module")
def validator(terminology) -> ProfileValidator:
    return ProfileValidator.from_directory(LOCAL, terminology)


def _example(name: str) -> dict:
    return json.loads((LOCAL / "examples" / f"{name}.json").read_text(encoding="utf-8"))


def _issues(validator, resource, profiles=None) -> list[tuple[str, str, tuple]]:
    return [(i.severity, i.code, i.expression) for i in validator.validate(resource, profiles)]


def test_extensible_binding_outside_the_value_set_is_a_warning(validator):
    encounter = _example("county-follow-up-encounter-valid")
    encounter["type"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "390906007"}]}]
    assert _issues(validator, encounter) == [("warning", "code-invalid", ("Encounter.type[0]",))]


def test_required_binding_outside_the_value_set_is_an_error_that_names_the_value_set(validator):
    encounter = _example("county-follow-up-encounter-valid")
    encounter["extension"][1]["valueCoding"]["code"] = "9"
    [issue] = validator.validate(encounter)
    assert (issue.severity, issue.code, issue.expression) == (
        "error", "code-invalid", ("Encounter.extension[1].valueCoding",))
    assert "ValueSet/follow-up-classification" in issue.diagnostics


def test_a_value_set_the_server_does_not_hold_gives_a_warning_not_an_error(terminology):
    definitions = [json.loads(p.read_text(encoding="utf-8")) for p in LOCAL.glob("StructureDefinition-*.json")]
    visit_mode = next(d for d in definitions if d["id"] == "visit-mode")
    for element in (*visit_mode["differential"]["element"], *visit_mode["snapshot"]["element"]):
        if "binding" in element:
            element["binding"]["valueSet"] = "https://county-fhir.example.org/fhir/ValueSet/not-shipped"
    validator = ProfileValidator(definitions, terminology)
    [issue] = validator.validate(_example("county-follow-up-encounter-valid"))
    assert (issue.severity, issue.expression) == ("warning", ("Encounter.extension[0].valueCoding",))
    assert "not-shipped is not known" in issue.diagnostics


def test_without_a_terminology_service_codes_are_not_checked():
    validator = ProfileValidator.from_directory(LOCAL, terminology=None)
    condition = _example("county-condition-invalid-not-managed-condition")
    assert _issues(validator, condition) == []


def test_extensions_of_other_publishers_are_left_alone(validator):
    patient = _example("county-patient-valid")
    patient["extension"] = [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                             "valueAddress": {"city": "长沙"}}]
    assert _issues(validator, patient) == []


def test_a_county_extension_with_two_values_breaks_its_definition(validator):
    encounter = _example("county-follow-up-encounter-valid")
    encounter["extension"][2] = {"url": SD + "next-visit-date", "extension": [{"url": "x", "valueString": "y"}]}
    issues = validator.validate(encounter)
    assert {i.expression for i in issues} == {("Encounter.extension[2].extension",), ("Encounter.extension[2].value",)}
    assert {i.diagnostics for i in issues} == {
        "Extension(next-visit-date).extension: at most 0 allowed, found 1",
        "Extension(next-visit-date).value[x]: at least 1 expected, found 0"}


def test_a_profile_for_another_type_is_an_error(validator):
    patient = _example("county-patient-valid")
    assert _issues(validator, patient, [SD + "county-condition"]) == [("error", "invalid", ("Patient",))]


def test_named_profiles_replace_the_claimed_ones_and_foreign_claims_are_ignored(validator):
    patient = _example("county-patient-invalid-no-birth-date")
    patient["meta"]["profile"].append("http://example.org/StructureDefinition/other")
    assert validator.claimed(patient) == [SD + "county-patient"]
    assert _issues(validator, patient, []) == []
    patient["meta"]["profile"] = [SD + "county-patient|0.1.0"]
    assert _issues(validator, patient) == [("error", "required", ("Patient.birthDate",))]


def test_each_profile_is_compiled_once(validator):
    first = validator.rules(SD + "county-patient")
    validator.validate(_example("county-patient-valid"))
    assert validator.rules(SD + "county-patient") is first


def test_messages_say_what_was_expected(validator):
    patient = copy.deepcopy(_example("county-patient-invalid-managing-organization-type"))
    [issue] = validator.validate(patient)
    assert issue.diagnostics == ("Patient.managingOrganization: a reference to Organization is expected, "
                                 "not Practitioner")
