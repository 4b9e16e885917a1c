"""Tests for fhir_server.search.fhirpath: the fast path, the fhirpathpy fallback, and a
differential check of both against plain fhirpathpy on the vendored spec examples."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from functools import cache
from pathlib import Path

import fhirpathpy
import pytest
from fhirpathpy.engine.nodes import FP_Type, ResourceNode
from fhirpathpy.models import models

from fhir_server.search.fhirpath import compile_expression, compile_relative, reference_type

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = json.loads((ROOT / "profiles/fhir-r4b/search-parameters.json").read_text())
SEARCH_PARAMS = [e["resource"] for e in BUNDLE["entry"]]
SUPPORTED = json.loads((ROOT / "profiles/fhir-r4b/supported-types.json").read_text())["types"]
EXAMPLES_DIR = ROOT / "tests/fixtures/spec-examples"
EXAMPLES = sorted(p for p in EXAMPLES_DIR.glob("*.json") if p.name != "VENDORED.json")


def applicable_types(sp: dict) -> list[str]:
    if {"Resource", "DomainResource"} & set(sp["base"]):
        return SUPPORTED
    return [t for t in sp["base"] if t in SUPPORTED]


def params_for(resource_type: str) -> list[dict]:
    return [sp for sp in SEARCH_PARAMS
            if sp.get("expression") and resource_type in applicable_types(sp)]


# ------------------------------------------------------------------ every vendored expression


@pytest.mark.parametrize("sp", [sp for sp in SEARCH_PARAMS if sp.get("expression")],
                         ids=lambda sp: sp["id"])
def test_every_vendored_expression_compiles_for_each_supported_base(sp):
    for resource_type in applicable_types(sp):
        fn = compile_expression(sp["expression"], resource_type)
        assert fn is not None, f"no branch of {sp['id']} applies to {resource_type}"
        assert isinstance(fn({"resourceType": resource_type}), list)
    for component in sp.get("component", []):
        assert compile_relative(component["expression"])({}) == []


def test_only_one_vendored_branch_needs_the_fhirpathpy_fallback():
    fallback = set()
    for sp in SEARCH_PARAMS:
        for resource_type in applicable_types(sp) if sp.get("expression") else []:
            if compile_expression(sp["expression"], resource_type).fallback_branches:
                fallback.add(sp["id"])
        for component in sp.get("component", []):
            assert compile_relative(component["expression"]).fallback_branches == 0
    assert fallback == {"questionnaireresponse-extensions-QuestionnaireResponse-item-subject"}


# ------------------------------------------------------------------ differential: vs fhirpathpy


def reference_resolve(inputs):
    """`resolve()` for plain fhirpathpy: a stub of the type the reference names."""
    out = []
    for ref in inputs:
        if not isinstance(ref, dict):
            continue
        literal = ref.get("reference") or ""
        match = re.search(r"(?:^|/)([A-Z][A-Za-z]+)/[^/]+(?:/_history/[^/]+)?$", literal)
        kind = match[1] if match else ref.get("type")
        if kind:
            out.append(ResourceNode.create_node({"resourceType": kind}))
    return out


@cache
def plain_fhirpathpy(expression: str, resource_type: str):
    # fhirpathpy does not match `Resource.x` / `DomainResource.x` roots against a concrete type.
    expression = re.sub(r"\b(?:Domain)?Resource\.", f"{resource_type}.", expression)
    return fhirpathpy.compile(as_of_type(expression), models["r4"], options={
        "userInvocationTable": {"resolve": {"fn": reference_resolve, "arity": {0: []}}}})


def as_of_type(expression: str) -> str:
    """`as` is strict about singletons in fhirpathpy (it raises on two `useContext`s); the
    module deliberately reads `(x as T)` / `x.as(T)` as `x.ofType(T)`, as R5 rewrote them."""
    expression = re.sub(r"\(([\w.]+) as (\w+)\)", r"\1.ofType(\2)", expression)
    return re.sub(r"\.as\((\w+)\)", r".ofType(\1)", expression)


def composite_targets(expression: str, resource_type: str):
    """(branch, element type) per branch of a composite's expression: `Library.useContext` ->
    `UsageContext`; backbone elements keep their path; `Observation` is the resource."""
    for branch in (b.strip() for b in expression.split("|")):
        if branch.split(".")[0] == resource_type:
            yield branch, models["r4"]["path2Type"].get(branch, branch)


def normalised(values: list) -> list:
    def norm(v):
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, float):
            return Decimal(str(v))
        if isinstance(v, FP_Type):
            return str(v)
        return v
    # fhirpathpy keeps the null placeholders of primitive arrays that have `_name` extensions
    return [norm(v) for v in values if v is not None]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_compiled_expressions_agree_with_plain_fhirpathpy_on_spec_example(path):
    resource = json.loads(path.read_text())
    resource_type = resource["resourceType"]
    mismatches = []
    for sp in params_for(resource_type):
        ours = compile_expression(sp["expression"], resource_type)(resource)
        theirs = plain_fhirpathpy(sp["expression"], resource_type)(resource)
        if normalised(ours) != normalised(theirs):
            mismatches.append(f"{sp['id']}: ours={ours!r:.300} fhirpathpy={theirs!r:.300}")
        for component in sp.get("component", []):
            expression = component["expression"]
            for branch, element_type in composite_targets(sp["expression"], resource_type):
                for node in compile_expression(branch, resource_type)(resource):
                    ref = fhirpathpy.evaluate(node, {"expression": as_of_type(expression),
                                                     "base": element_type}, model=models["r4"])
                    for mine in (compile_relative(expression)(node),
                                 compile_relative(expression, element_type)(node)):
                        if normalised(mine) != normalised(ref):
                            mismatches.append(f"{sp['id']}/{expression}: {mine} != {ref}")
    assert not mismatches, "\n".join(mismatches)


def test_vendored_examples_cover_every_supported_type_and_stay_small():
    record = json.loads((EXAMPLES_DIR / "VENDORED.json").read_text())
    assert (record["package"], record["version"]) == ("hl7.fhir.r4.examples", "4.0.1")
    assert set(record["files"]) == {p.name for p in EXAMPLES}
    types = {json.loads(p.read_text())["resourceType"] for p in EXAMPLES}
    assert types == set(SUPPORTED)
    assert sum(p.stat().st_size for p in EXAMPLES) < 1_500_000


def test_differential_check_is_not_vacuous():
    """The examples must produce values for many parameters of each kind, or the comparison
    proves little."""
    hits = {"any": 0, "resolve() is": 0, "as/ofType": 0, "where(x='y')": 0}
    for path in EXAMPLES:
        resource = json.loads(path.read_text())
        for sp in params_for(resource["resourceType"]):
            if not compile_expression(sp["expression"], resource["resourceType"])(resource):
                continue
            expression = sp["expression"]
            hits["any"] += 1
            hits["resolve() is"] += "resolve() is" in expression
            hits["as/ofType"] += bool(re.search(r" as |\.as\(|ofType\(", expression))
            hits["where(x='y')"] += bool(re.search(r"where\(\w+='", expression))
    assert hits["any"] > 1000 and hits["resolve() is"] > 40, hits
    assert hits["as/ofType"] > 50 and hits["where(x='y')"] > 5, hits


# ------------------------------------------------------------------ focused behaviour

OBS = {
    "resourceType": "Observation", "id": "o1", "status": "final",
    "meta": {"lastUpdated": "2024-01-02T03:04:05Z", "tag": [{"code": "t1"}, {"code": "t2"}]},
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"},
                        {"system": "http://snomed.info/sct", "code": "27113001"}]},
    "subject": {"reference": "Patient/p1"},
    "effectivePeriod": {"start": "2024-01-01"},
    "valueQuantity": {"value": 72.5, "unit": "kg"},
    "component": [{"code": {"text": "a"}, "valueQuantity": {"value": 1}},
                  {"code": {"text": "b"}, "valueString": "x"}],
}


def ev(expression, resource=OBS, resource_type=None):
    return compile_expression(expression, resource_type or resource["resourceType"])(resource)


@pytest.mark.parametrize("expression", [
    "Observation.value.as(Quantity)", "(Observation.value as Quantity)",
    "Observation.value.ofType(Quantity)", "Observation.value"])
def test_choice_element_forms_select_the_typed_key(expression):
    fn = compile_expression(expression, "Observation")
    assert fn(OBS) == [{"value": 72.5, "unit": "kg"}]
    assert fn.fast_path_branches == 1


def test_parenthesised_as_can_be_navigated_further():
    observation = {"resourceType": "Observation", "valueCodeableConcept": {"text": "pos"}}
    fn = compile_expression("(Observation.value as string) | (Observation.value as "
                            "CodeableConcept).text", "Observation")
    assert fn(observation) == ["pos"] and fn.fast_path_branches == 2
    assert fn({"resourceType": "Observation", "valueString": "high"}) == ["high"]


def test_bare_choice_element_matches_whichever_typed_key_is_present():
    assert ev("Observation.effective") == [{"start": "2024-01-01"}]
    other = {**OBS, "effectivePeriod": None, "effectiveDateTime": "2024-02-02"}
    del other["effectivePeriod"]
    assert ev("Observation.effective", other) == ["2024-02-02"]
    assert ev("Observation.effective", {"resourceType": "Observation",
                                        "effectiveInstant": "2024-03-03T00:00:00Z"}) \
        == ["2024-03-03T00:00:00Z"]


def test_choice_with_primitive_type_uses_capitalised_key():
    condition = {"resourceType": "Condition", "onsetDateTime": "2020", "onsetString": "child"}
    assert ev("Condition.onset.as(dateTime)", condition) == ["2020"]
    assert ev("Condition.onset.as(string)", condition) == ["child"]
    assert ev("(Patient.deceased as dateTime)", {"resourceType": "Patient",
                                                 "deceasedBoolean": True}) == []


def test_as_a_supertype_also_selects_its_subtypes():
    patient = {"resourceType": "Patient", "extension": [
        {"url": "u", "valueAge": {"value": 3}}, {"url": "u", "valueString": "x"}]}
    assert ev("Patient.extension('u').value.as(Quantity)", patient) == [{"value": 3}]


def test_lists_are_flattened_at_every_step_and_null_placeholders_dropped():
    patient = {"resourceType": "Patient", "name": [
        {"given": ["A", None, "B"], "_given": [None, {"extension": []}, None]},
        {"given": ["C"]}, {"family": "D"}]}
    assert ev("Patient.name.given", patient) == ["A", "B", "C"]
    assert ev("Observation.component.code.text") == ["a", "b"]
    assert ev("Observation.code.coding.system") == ["http://loinc.org", "http://snomed.info/sct"]


def test_missing_elements_give_an_empty_list():
    assert ev("Observation.encounter") == []
    assert ev("Observation.value.as(CodeableConcept)") == []
    assert ev("Observation.subject.where(resolve() is Group)") == []
    assert ev("Observation.extension('http://x')") == []
    assert ev("Observation.code.coding[5].code") == []
    assert ev("Resource.meta.profile") == []


def test_where_equality_filter_keeps_matching_elements_and_navigates_on():
    patient = {"resourceType": "Patient", "telecom": [
        {"system": "phone", "value": "555"}, {"system": "email", "value": "a@b"},
        {"value": "no-system"}]}
    assert ev("Patient.telecom.where(system='email')", patient) == [{"system": "email",
                                                                     "value": "a@b"}]
    library = {"resourceType": "Library", "relatedArtifact": [
        {"type": "depends-on", "resource": "http://x/Library/a"},
        {"type": "composed-of", "resource": "http://x/Library/b"}]}
    fn = compile_expression("Library.relatedArtifact.where(type='composed-of').resource",
                            "Library")
    assert fn(library) == ["http://x/Library/b"] and fn.fast_path_branches == 1


@pytest.mark.parametrize("ref, expected", [
    ({"reference": "Patient/p1"}, True),
    ({"reference": "Patient/p1/_history/3"}, True),
    ({"reference": "https://fhir.example.org/r4/Patient/p1"}, True),
    ({"type": "Patient", "identifier": {"value": "123"}}, True),
    ({"reference": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", "type": "Patient"}, True),
    ({"reference": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"}, False),
    ({"reference": "#contained-1"}, False),
    ({"reference": "Group/g1"}, False),
    ({"reference": "https://fhir.example.org/r4/Group/g1"}, False),
    ({"display": "just text"}, False),
])
def test_resolve_is_patient_uses_the_reference_type(ref, expected):
    resource = {"resourceType": "Condition", "subject": ref}
    fn = compile_expression("Condition.subject.where(resolve() is Patient)", "Condition")
    assert fn(resource) == ([ref] if expected else [])
    assert fn.fast_path_branches == 1
    assert (reference_type(ref) == "Patient") is expected


def test_extension_filters_by_url_and_keeps_every_match():
    patient = {"resourceType": "Patient", "extension": [
        {"url": "http://a", "valueString": "1"}, {"url": "http://b", "valueString": "2"},
        {"url": "http://a", "valueString": "3"}]}
    assert ev("Patient.extension('http://a').value", patient) == ["1", "3"]
    assert ev("Patient.extension('http://a')", patient) == [patient["extension"][0],
                                                            patient["extension"][2]]


def test_union_keeps_only_branches_for_the_resource_type_and_removes_duplicates():
    expression = ("AllergyIntolerance.code | Observation.code.coding | Patient.name "
                  "| Observation.code.coding[0]")
    fn = compile_expression(expression, "Observation")
    assert fn(OBS) == OBS["code"]["coding"]
    assert (fn.fast_path_branches, fn.fallback_branches) == (2, 0)
    assert compile_expression(expression, "Encounter") is None
    assert compile_expression("", "Patient") is None


def test_resource_rooted_and_relative_branches_apply_to_every_type():
    assert ev("Resource.meta.lastUpdated") == ["2024-01-02T03:04:05Z"]
    assert ev("DomainResource.meta.tag.code", {"resourceType": "Patient",
                                               "meta": {"tag": [{"code": "x"}]}}) == ["x"]
    assert ev("id") == ["o1"]


def test_indexer_selects_one_item():
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Composition"}},
                                                  {"resource": {"resourceType": "Patient"}}]}
    assert ev("Bundle.entry[0].resource", bundle) == [{"resourceType": "Composition"}]


def test_results_are_the_original_json_objects():
    assert ev("Observation.subject")[0] is OBS["subject"]
    assert ev("Observation.value.as(Quantity).value") == [72.5]


@pytest.mark.parametrize("resource, expected", [
    ({"resourceType": "Patient", "deceasedBoolean": True}, [True]),
    ({"resourceType": "Patient", "deceasedBoolean": False}, [False]),
    ({"resourceType": "Patient", "deceasedDateTime": "2020-01-01"}, [True]),
    ({"resourceType": "Patient"}, [False]),
])
def test_exists_and_not_false_is_evaluated_natively_as_fhirpathpy_does(resource, expected):
    expression = "Patient.deceased.exists() and Patient.deceased != false"
    fn = compile_expression(expression, "Patient")
    assert fn.fallback_branches == 0
    assert fn(resource) == expected == fhirpathpy.evaluate(resource, expression, model=models["r4"])


def test_fallback_returns_plain_json_and_applies_the_resolve_rule():
    questionnaire_response = {"resourceType": "QuestionnaireResponse", "item": [
        {"linkId": "1", "extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/questionnaireresponse-isSubject",
            "valueBoolean": True}],
         "answer": [{"valueReference": {"reference": "Patient/p1"}}, {"valueString": "x"}]},
        {"linkId": "2", "answer": [{"valueReference": {"reference": "Patient/p2"}}]}]}
    sp = next(sp for sp in SEARCH_PARAMS if sp["code"] == "item-subject")
    assert ev(sp["expression"], questionnaire_response) == [{"reference": "Patient/p1"}]
    fn = compile_expression(
        "Observation.subject.where(resolve() is Patient).exists() and Observation.id.exists()",
        "Observation")
    assert fn.fallback_branches == 1
    assert fn(OBS) == [True]
    assert fn({**OBS, "subject": {"reference": "Group/g"}}) == [False]
    dated = compile_expression("Observation.effective.as(Period).start", "Observation")
    assert dated(OBS) == ["2024-01-01"] and type(dated(OBS)[0]) is str


def test_composite_components_evaluate_on_each_selected_element():
    components = compile_expression("Observation.component", "Observation")(OBS)
    code, value = compile_relative("code"), compile_relative("value.as(Quantity)")
    assert [(code(c), value(c)) for c in components] == [
        ([{"text": "a"}], [{"value": 1}]), ([{"text": "b"}], [])]


def test_relative_component_expressions():
    use_context = {"code": {"code": "age"}, "valueRange": {"low": {"value": 1}}}
    assert compile_relative("code")(use_context) == [{"code": "age"}]
    quantity_or_range = compile_relative("value.as(Quantity) | value.as(Range)")
    assert quantity_or_range(use_context) == [{"low": {"value": 1}}]
    assert compile_relative("value.as(Quantity)", "UsageContext")(
        {"valueQuantity": {"value": 2}}) == [{"value": 2}]
    characteristic = compile_relative("(value as CodeableConcept) | (value as boolean)")
    assert characteristic({"valueBoolean": False}) == [False]
    assert compile_relative("component.code")(OBS) == [{"text": "a"}, {"text": "b"}]
