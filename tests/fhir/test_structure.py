"""The compiled structural checker (fhir_server.fhir.structure) against the fhir.resources models.

The checker must never accept what the models refuse, and should refuse what they refuse
at the element they name. The mutations below are made from the official examples, at
sites found by walking each example alongside its validated model.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from fhir_core import types as fhir_types
from fhir_core.utils import get_fhir_type_name
from fhir_server.errors import InvalidRequest
from fhir_server.fhir.models import check_resource
from fhir_server.fhir.structure import MAX_DEPTH, model_class, structure_problem

SPEC_EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "spec-examples"
COUNTY_EXAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "local" / "examples"


def _examples() -> dict[str, dict]:
    files = sorted(SPEC_EXAMPLES.glob("*.json")) + sorted(COUNTY_EXAMPLES.glob("*.json"))
    loaded = {path.name: json.loads(path.read_text()) for path in files}
    return {name: r for name, r in loaded.items() if model_class(str(r.get("resourceType")))}


EXAMPLES = _examples()
# Official examples that the R4B models refuse (R4 content the R4B models do not know)
MODEL_REFUSES = {
    "CodeSystem-v2-0367.json": "CodeSystem.concept.1.extension.0._valueString",
    "Questionnaire-qs1.json": "Questionnaire.item.0.item.0.linkId",
}
VALID_EXAMPLES = {name: r for name, r in EXAMPLES.items() if name not in MODEL_REFUSES}


def _model_verdict(resource: dict) -> list[str] | None:
    """None if the model accepts ``resource``, else the element locations it names."""
    rtype = resource["resourceType"]
    try:
        model_class(rtype).model_validate(resource)
    except ValidationError as exc:
        return [
            ".".join([rtype, *(str(p) for p in err["loc"] if not str(p).startswith("function-"))])
            for err in exc.errors()
        ]
    return None


def _model_accepts(resource: dict) -> bool:
    """Whether the model accepts ``resource`` (fhir_core fails without a verdict on a few faults)."""
    try:
        model_class(resource["resourceType"]).model_validate(resource)
    except Exception:  # noqa: BLE001
        return False
    return True


def _names(location: str, expected: str) -> bool:
    """``location`` is the element ``expected`` or lies inside it."""
    return location == expected or location.startswith(expected + ".")


# ----------------------------------------------------------------------------------------------
# the examples
# ----------------------------------------------------------------------------------------------


def test_examples_are_present():
    assert len(EXAMPLES) > 90
    assert set(MODEL_REFUSES) <= set(EXAMPLES)


HOT_TYPES = [
    "Patient", "Observation", "Encounter", "Condition", "DiagnosticReport", "Specimen", "Organization",
    "Practitioner", "ServiceRequest", "Task", "CarePlan", "Group", "Provenance", "AuditEvent",
    "QuestionnaireResponse", "Composition", "Bundle",
]


@pytest.mark.parametrize("rtype", HOT_TYPES)
def test_the_types_written_most_take_the_fast_path(rtype):
    examples = [r for r in VALID_EXAMPLES.values() if r["resourceType"] == rtype]
    assert examples
    assert [structure_problem(r) for r in examples] == [None] * len(examples)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_gets_the_models_verdict(name):
    resource = EXAMPLES[name]
    problem = structure_problem(resource)
    model_locations = _model_verdict(resource)
    if name in MODEL_REFUSES:
        assert model_locations and MODEL_REFUSES[name] in model_locations
        assert problem is not None and problem.location == MODEL_REFUSES[name]
    else:
        assert model_locations is None
        assert problem is None, problem
        assert check_resource(resource) is resource


# ----------------------------------------------------------------------------------------------
# mutation sites, found by walking an example alongside its validated model
# ----------------------------------------------------------------------------------------------


def _walk(instance: BaseModel, data: dict, path: tuple):
    """Yield ("object", path, data, model) and ("leaf", path, parent, key, fhir type, in a list)."""
    model = type(instance)
    yield ("object", path, data, model)
    fields = {(info.alias or name): (name, info) for name, info in model.model_fields.items()}
    for key, value in data.items():
        if key == "resourceType" or key.startswith("_") or value is None:
            continue
        name, info = fields[key]
        attribute = getattr(instance, name)
        if isinstance(attribute, list):
            for index, (item, item_data) in enumerate(zip(attribute, value, strict=True)):
                if isinstance(item, BaseModel):
                    yield from _walk(item, item_data, (*path, key, index))
                elif item is not None:
                    yield ("leaf", (*path, key, index), value, index, get_fhir_type_name(info, "R4B."), True)
        elif isinstance(attribute, BaseModel):
            yield from _walk(attribute, value, (*path, key))
        else:
            yield ("leaf", (*path, key), data, key, get_fhir_type_name(info, "R4B."), False)


# A value of each primitive type that breaks its format (or, where the format takes any
# string, its JSON type).
BAD_VALUES = {
    "date": "2021-02-29",
    "dateTime": "2020-01-01T10:00:00",
    "instant": "2020-01-01",
    "time": "24:00:00",
    "id": "not an id",
    "decimal": "01.5",
    "integer": 1.5,
    "positiveInt": 0,
    "unsignedInt": -1,
    "boolean": "maybe",
    "code": " padded",
    "string": "",
    "oid": "1.2.3",
    "uuid": "not-a-uuid",
    "base64Binary": "abc",
    "markdown": 42,
    "uri": 42,
    "canonical": 42,
    "url": 42,  # any string is a url to fhir_core
    "xhtml": 42,
}
# A valid value of some types, to add as a second type of a choice element
CHOICE_VALUES = {"string": "x", "boolean": True, "integer": 1, "dateTime": "2020", "code": "x",
                 "CodeableConcept": {"text": "x"}, "Quantity": {"value": 1}, "Reference": {"display": "x"}}


DELETE = object()  # a mutation that removes the element


@dataclass(frozen=True)
class Mutation:
    kind: str
    path: tuple  # keys and list indexes of the element set (or deleted)
    value: object
    checker_path: tuple  # the element the checker must name
    model_path: tuple  # the element the model's issues must name (or lie inside)

    def applied_to(self, resource: dict) -> dict:
        mutated = copy.deepcopy(resource)
        container = mutated
        for step in self.path[:-1]:
            container = container[step]
        if self.value is DELETE:
            del container[self.path[-1]]
        else:
            container[self.path[-1]] = self.value
        return mutated


def _object_mutations(path: tuple, data: dict, model: type):
    unknown = (*path, "bogusElement")
    yield Mutation("unknown-element", unknown, "x", unknown, unknown)
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    for key, value in data.items():
        if key not in fields or value is None:
            continue
        at = (*path, key)
        if isinstance(value, dict):
            yield Mutation("complex-as-number", at, 42, at, at)
            yield Mutation("list-for-single", at, [value], at, at)
        if isinstance(value, list) and value:
            yield Mutation("single-for-list", at, value[0], at, at)
            yield Mutation("empty-list", at, [], at, at)
            if isinstance(value[0], dict) and not key.startswith("_"):
                yield Mutation("null-in-list", (*at, 0), None, (*at, 0), at)
        if fields[key].is_required():
            yield Mutation("missing-required", at, DELETE, at, at)
    instance = model.model_construct()
    for element, _extension in instance.get_required_fields():
        if data.get(element) is not None and data.get("_" + element) is None:
            at = (*path, element)
            yield Mutation("null-required-primitive", at, None, at, at)
    for prefix, names in instance.get_one_of_many_fields().items():
        aliases = [model.model_fields[name].alias for name in names]
        present = [alias for alias in aliases if data.get(alias) is not None]
        if not present:
            continue
        if model.model_fields[names[0]].json_schema_extra.get("one_of_many_required"):
            choice = (*path, prefix + "[x]")
            yield Mutation("missing-required-choice", (*path, present[0]), DELETE, choice, path)
        for alias in aliases:
            if alias not in present and alias[len(prefix):] in CHOICE_VALUES:
                value = CHOICE_VALUES[alias[len(prefix):]]
                yield Mutation("second-choice", (*path, alias), value, (*path, alias), path)
                break
    if data.get("contained"):
        first = (*path, "contained", 0)
        resource_type = (*first, "resourceType")
        yield Mutation("unknown-contained-type", resource_type, "NotAResource", resource_type, first)
        yield Mutation("datatype-as-contained", first, {"resourceType": "HumanName", "text": "x"},
                       resource_type, first)


def _leaf_mutations(path: tuple, parent, key, type_name: str, in_list: bool):
    yield Mutation(f"bad-{type_name}", path, BAD_VALUES[type_name], path, path)
    yield Mutation("primitive-as-object", path, {"value": "x"}, path, path)
    if not in_list:
        extension = (*path[:-1], "_" + key)
        yield Mutation("empty-primitive-extension", extension, {}, extension, extension)
        yield Mutation("list-for-primitive", path, [parent[key]], path, path)


def _mutations(resource: dict) -> list[Mutation]:
    """The first site of each kind of mutation in ``resource``."""
    first: dict[str, Mutation] = {}
    for node in _walk(model_class(resource["resourceType"]).model_validate(resource), resource, ()):
        mutations = _object_mutations(*node[1:]) if node[0] == "object" else _leaf_mutations(*node[1:])
        for mutation in mutations:
            first.setdefault(mutation.kind, mutation)
    return list(first.values())


ACCEPTED_KINDS = {"empty-list"}  # FHIR forbids empty arrays, but the models take them
# fhir_core fails without a verdict on these
MODEL_FAILS = {"unknown-contained-type": KeyError, "bad-url": AttributeError}


def test_mutations_cover_every_kind():
    kinds = {mutation.kind for resource in VALID_EXAMPLES.values() for mutation in _mutations(resource)}
    assert {"unknown-element", "complex-as-number", "list-for-single", "single-for-list", "empty-list",
            "null-in-list", "missing-required", "null-required-primitive", "missing-required-choice",
            "second-choice", "unknown-contained-type", "datatype-as-contained", "primitive-as-object",
            "empty-primitive-extension", "list-for-primitive", "bad-date", "bad-dateTime", "bad-instant",
            "bad-time", "bad-id", "bad-decimal", "bad-integer", "bad-positiveInt", "bad-unsignedInt",
            "bad-boolean", "bad-code", "bad-string", "bad-uri", "bad-base64Binary"} <= kinds


@pytest.mark.parametrize("name", sorted(VALID_EXAMPLES))
def test_mutations_get_the_models_verdict(name):
    original = VALID_EXAMPLES[name]
    rtype = original["resourceType"]

    def dotted(path):
        return ".".join(map(str, (rtype, *path)))

    wrong = []
    for mutation in _mutations(original):
        resource = mutation.applied_to(original)
        problem = structure_problem(resource)
        if mutation.kind in ACCEPTED_KINDS:
            if problem is not None or _model_verdict(resource) is not None:
                wrong.append((mutation, "not accepted by both", problem))
            continue
        if problem is None or problem.location != dotted(mutation.checker_path):
            wrong.append((mutation, "checker", problem))
        if mutation.kind in MODEL_FAILS:
            with pytest.raises(MODEL_FAILS[mutation.kind]):
                model_class(rtype).model_validate(resource)
        try:
            check_resource(resource)
        except InvalidRequest as exc:  # the model's issues, or the checker's where the model fails
            locations = [issue.expression[0] for issue in exc.issues]
            if exc.status != 400 or not any(_names(loc, dotted(mutation.model_path)) for loc in locations):
                wrong.append((mutation, "issues", locations))
        else:
            wrong.append((mutation, "accepted by check_resource", None))
    assert not wrong, "\n".join(map(str, wrong))


# ----------------------------------------------------------------------------------------------
# never laxer than the model: arbitrary values anywhere, and primitive formats
# ----------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([1.5, 0.0, 1e21])
    | st.sampled_from(["", " ", "x", "2020", "2020-01-01", "true", "1", "a b", "urn:oid:1.2"]),
    lambda inner: st.lists(inner, max_size=2)
    | st.dictionaries(st.sampled_from(["text", "value", "url", "id", "x"]), inner, max_size=2),
    max_leaves=4,
)
# every object and primitive of the smaller examples
SITES = [
    (name, node[1])
    for name, r in sorted(VALID_EXAMPLES.items())
    if len(json.dumps(r)) < 6000
    for node in _walk(model_class(r["resourceType"]).model_validate(r), r, ())
    if node[1]
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(site=st.sampled_from(SITES), value=JSON_VALUES)
def test_checker_never_accepts_what_the_model_refuses(site, value):
    name, path = site
    resource = Mutation("any", path, value, path, path).applied_to(VALID_EXAMPLES[name])
    if structure_problem(resource) is None:
        assert _model_accepts(resource)


def _observation(**elements):
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **elements}


FORMATS = {  # element carrying the type -> the fhir_core format regex
    "effectiveDateTime": fhir_types.DateTime.pattern,
    "issued": fhir_types.Instant.pattern,
    "valueTime": fhir_types.Time.pattern,
}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), element=st.sampled_from(sorted(FORMATS)))
def test_date_and_time_formats_agree_with_the_model(data, element):
    text = data.draw(st.from_regex(FORMATS[element], fullmatch=True) | st.text(max_size=30))
    resource = _observation(**{element: text})
    assert (structure_problem(resource) is None) == _model_accepts(resource)


@settings(max_examples=200, deadline=None)
@given(text=st.from_regex(fhir_types.Date.pattern, fullmatch=True) | st.text(max_size=12))
def test_date_format_agrees_with_the_model(text):
    resource = {"resourceType": "Patient", "birthDate": text}
    assert (structure_problem(resource) is None) == _model_accepts(resource)


@settings(max_examples=200, deadline=None)
@given(value=st.from_regex(fhir_types.Decimal.pattern, fullmatch=True) | st.text(max_size=12)
       | st.integers() | st.floats(allow_nan=True, allow_infinity=True))
def test_decimal_format_agrees_with_the_model(value):
    resource = _observation(valueQuantity={"value": value})
    assert (structure_problem(resource) is None) == _model_accepts(resource)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=8), element=st.sampled_from(["id", "language", "implicitRules"]))
def test_string_formats_agree_with_the_model(text, element):
    resource = {"resourceType": "Patient", element: text}
    assert (structure_problem(resource) is None) == _model_accepts(resource)


# ----------------------------------------------------------------------------------------------
# check_resource: the model has the last word on what the checker refuses
# ----------------------------------------------------------------------------------------------


def test_what_the_model_coerces_is_still_accepted():
    patient = {"resourceType": "Patient", "maritalStatus": '{"text": "married"}'}  # JSON in a string
    assert structure_problem(patient).location == "Patient.maritalStatus"
    assert check_resource(patient) is patient
    patient = {"resourceType": "Patient", "communication": [{"language": None}]}  # null required element
    assert structure_problem(patient).location == "Patient.communication.0.language"
    assert check_resource(patient) is patient


def test_lax_primitives_are_the_models_own():
    patient = {"resourceType": "Patient", "active": "true", "multipleBirthInteger": "2"}
    assert structure_problem(patient) is None
    assert _model_verdict(patient) is None


def test_a_fault_the_model_fails_on_is_reported_as_the_checker_found_it():
    patient = {"resourceType": "Patient", "contained": [{"resourceType": "Nonsense"}]}
    with pytest.raises(InvalidRequest) as caught:
        check_resource(patient)
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == ("Patient.contained.0.resourceType",)


def test_errors_are_the_models():
    patient = {"resourceType": "Patient", "name": [{"given": "Ann"}], "gender": "fe male "}
    with pytest.raises(InvalidRequest) as caught:
        check_resource(patient, "Patient")
    issues = caught.value.issues
    assert {issue.expression for issue in issues} == {("Patient.name.0.given",), ("Patient.gender",)}
    assert all(issue.code == "structure" for issue in issues)
    assert "Patient.name.0.given: Input should be a valid list" in [issue.diagnostics for issue in issues]


def test_contained_and_bundled_resources_are_checked_as_their_type():
    patient = {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "name": "x"}]}
    observation = {"resourceType": "Observation", "status": "final"}
    entries = [{"resource": patient}, {"resource": observation}]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    problem = structure_problem(bundle)
    assert problem.location == "Bundle.entry.1.resource.code"
    observation["code"] = {"text": "x"}
    assert structure_problem(bundle) is None
    patient["contained"][0]["name"] = ["x"]
    assert structure_problem(bundle).location == "Bundle.entry.0.resource.contained.0.name"


def test_deep_nesting_is_left_to_the_model():
    extension = {"url": "http://example.org/x", "valueString": "x"}
    for _ in range(MAX_DEPTH):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    patient = {"resourceType": "Patient", "extension": [extension]}
    assert structure_problem(patient).message == f"more than {MAX_DEPTH} nested objects"
    assert check_resource(patient) is patient  # the model copes at this depth
