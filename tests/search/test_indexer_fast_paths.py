"""The indexer's fast paths against the generic evaluation.

``Indexer.rows`` plans the parameters per resource type, skips those whose path starts at an
element the resource lacks, walks paths natively and converts each element once per resource.
The reference here does none of that: it evaluates every parameter's expression (and each
composite's component expressions) with plain fhirpathpy and turns every result into rows with
the index kind's ``extract``. Both must give the same rows, in the same order, for every vendored
spec example and every valid county example.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import fhirpathpy
import pytest
from fhirpathpy.engine.nodes import FP_Type, ResourceNode
from fhirpathpy.models import models

from fhir_server.search.indexer import KINDS, Indexer, IndexRow, analyte_of, component_code
from fhir_server.search.registry import SearchParamRegistry
from fhir_server.search.units import canonical_forms, canonicalize, molar_mass
from fhir_server.storage.index import quantity
from tests.search.test_fhirpath import as_of_type, composite_targets, plain_fhirpathpy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(
    [p for p in (ROOT / "tests/fixtures/spec-examples").glob("*.json") if p.name != "VENDORED.json"]
    + list((ROOT / "profiles/local/examples").glob("*-valid.json")))


@pytest.fixture(scope="module")
def registry() -> SearchParamRegistry:
    return SearchParamRegistry.from_profiles(ROOT / "profiles")


# ------------------------------------------------------------------ the generic reference


def plain(values: list) -> list:
    """fhirpathpy results as the JSON values they came from."""
    out = []
    for value in values:
        if isinstance(value, ResourceNode):
            value = value.data
        elif isinstance(value, FP_Type):
            value = str(value)
        if value is not None:  # null placeholders of primitive arrays with `_name` extensions
            out.append(value)
    return out


def kind_values(kind: str, node, analyte: str | None) -> list[dict]:
    return quantity.extract(node, analyte) if kind == "quantity" else KINDS[kind].extract(node)


def composite_rows(param, resource: dict, analyte: str | None) -> list[IndexRow]:
    rtype = resource["resourceType"]
    elements: list[tuple[object, str]] = []  # the union of the branches, with each one's type
    for branch, element_type in composite_targets(param.expression, rtype):
        for node in plain(plain_fhirpathpy(branch, rtype)(resource)):
            if all(node != seen for seen, _ in elements):
                elements.append((node, element_type))
    rows = []
    for grp, (element, element_type) in enumerate(elements):
        if not isinstance(element, dict):
            continue
        parts = []
        for comp in param.components:
            found = fhirpathpy.evaluate(element, {"expression": as_of_type(comp.expression),
                                                  "base": element_type}, model=models["r4"])
            values = [v for node in plain(found) for v in kind_values(comp.param.type, node, analyte)]
            if not values:
                break
            parts.append((comp.param.type, values))
        else:
            for position, (kind, values) in enumerate(parts):
                rows += [IndexRow(kind, component_code(param.code, position), grp, v) for v in values]
    return rows


def param_rows(param, resource: dict) -> list[IndexRow]:
    rtype = resource["resourceType"]
    analyte = analyte_of(resource) if rtype == "Observation" else None
    if param.type == "composite":
        return composite_rows(param, resource, analyte)
    rows, seen = [], set()
    for node in plain(plain_fhirpathpy(param.expression, rtype)(resource)):
        for v in kind_values(param.type, node, analyte):
            if tuple(v.values()) not in seen:  # one row per distinct value
                seen.add(tuple(v.values()))
                rows.append(IndexRow(param.type, param.code, None, v))
    return rows


def generic_rows(registry: SearchParamRegistry, resource: dict) -> list[IndexRow]:
    """Every parameter's rows, but a union's (its parts' rows serve it)."""
    return [row for param in registry.params_for(resource["resourceType"]).values()
            if not param.from_columns and param.extract is not None and registry.union_parts(param) is None
            for row in param_rows(param, resource)]


def content(rows: list[IndexRow]) -> set:
    """What a search can find in ``rows``: the values of each group (a composite's element)."""
    groups: dict = {}
    for row in rows:
        position = row.code.partition("~")[2]
        groups.setdefault(row.grp, set()).add((position, tuple(sorted(row.values.items()))))
    return {frozenset(group) for group in groups.values()} if rows and rows[0].grp is not None else \
        set().union(*groups.values())


# ------------------------------------------------------------------ the comparison


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_indexer_rows_equal_the_generic_fhirpathpy_rows(registry, path):
    resource = json.loads(path.read_text())
    if resource["resourceType"] not in registry.supported_types:
        pytest.skip(f"{resource['resourceType']} is not a supported type")
    indexer = Indexer(registry)
    rows = indexer.rows(resource)
    assert rows == generic_rows(registry, resource)
    assert all(type(row) is IndexRow for row in rows)
    assert indexer.rows(resource) == rows  # the second time, from the cached plan


def test_the_comparison_covers_every_kind_and_composites(registry):
    kinds, composite_codes = set(), set()
    for path in EXAMPLES:
        resource = json.loads(path.read_text())
        if resource["resourceType"] in registry.supported_types:
            for row in Indexer(registry).rows(resource):
                kinds.add(row.kind)
                if row.grp is not None:
                    composite_codes.add(row.code.split("~")[0])
    assert kinds == {"string", "token", "date", "number", "quantity", "reference", "uri"}
    assert {"component-code-value-quantity", "code-value-quantity"} <= composite_codes


def test_a_union_parameter_would_have_exactly_the_rows_of_its_parts(registry):
    """A union parameter is searched through its parts' rows: what it would have found in rows of
    its own (every example, by fhirpathpy), the parts' rows hold."""
    unions = {t: [p for p in registry.params_for(t).values() if registry.union_parts(p)]
              for t in registry.supported_types}
    assert {p.code for p in unions["Observation"]} == {
        "combo-code", "combo-value-quantity", "combo-value-concept", "combo-data-absent-reason",
        "combo-code-value-quantity", "combo-code-value-concept"}
    assert [p.code for p in unions["Patient"]] == [p.code for p in unions["Practitioner"]] == ["phonetic"]
    assert unions["Organization"] == []  # its phonetic is not its name (which has the aliases too)
    compared = 0
    for path in EXAMPLES:
        resource = json.loads(path.read_text())
        for param in unions.get(resource["resourceType"], []):
            own = param_rows(param, resource)
            parts = [row for part in registry.union_parts(param) for row in param_rows(part, resource)]
            if param.type == "composite":  # each part numbers its own groups
                parts = [row._replace(grp=(i, row.grp)) for i, part in enumerate(registry.union_parts(param))
                         for row in param_rows(part, resource)]
            assert content(own) == content(parts), (path.name, param.code)
            compared += bool(own)
    assert compared >= 20


# ------------------------------------------------------------------ focused behaviour


def test_a_search_parameter_added_at_runtime_indexes_through_fhirpathpy_until_removed():
    registry = SearchParamRegistry.from_profiles(ROOT / "profiles")
    indexer = Indexer(registry)
    patient = {"resourceType": "Patient", "id": "p",
               "name": [{"given": ["Jian", "Guo"], "family": "Li"}, {"given": ["JG"]}]}
    assert not [row for row in indexer.rows(patient) if row.code == "first-given"]

    url = "https://county-fhir.example.org/fhir/SearchParameter/first-given"
    (param,) = registry.add({"resourceType": "SearchParameter", "url": url, "code": "first-given",
                             "base": ["Patient"], "type": "string", "status": "active",
                             "expression": "Patient.name.given.first()"})
    assert param.extract.fallback_branches == 1
    rows = indexer.rows(patient)
    assert [row.values["exact"] for row in rows if row.code == "first-given"] == ["Jian"]
    assert rows == generic_rows(registry, patient)

    registry.remove(url)
    assert not [row for row in indexer.rows(patient) if row.code == "first-given"]


def test_an_element_shared_by_parameters_gives_each_the_same_rows(registry):
    """`Observation.code` feeds `code` and the composites: converted once."""
    observation = {"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                   "valueQuantity": {"value": 5.5, "system": "http://unitsofmeasure.org",
                                     "code": "mmol/L"}}
    rows = Indexer(registry).rows(observation)
    code_values = {row.code: row.values for row in rows if row.values.get("code") == "2339-0"}
    assert {"code", "code-value-quantity~0"} <= set(code_values)
    assert len({json.dumps(v, sort_keys=True) for v in code_values.values()}) == 1
    quantities = [row.values for row in rows if row.kind == "quantity" and row.code == "value-quantity"]
    assert [q["canonical_code"] for q in quantities] == ["mol.m-3", "g.m-3"]
    assert quantities[0]["canonical_value"] == 5.5
    assert quantities[1]["canonical_value"] == pytest.approx(5.5 * molar_mass("2339-0"))
    assert rows == generic_rows(registry, observation)


@pytest.mark.parametrize("code, analyte", [("mg/dL", "2339-0"), ("mmol/L", "2339-0"), ("mm[Hg]", None),
                                           ("Cel", None), ("[degF]", "2339-0"), ("10*9/L", None),
                                           ("mg/dL", None), ("[IU]/L", None)])
def test_cached_unit_conversions_give_exactly_what_canonicalize_computes(code, analyte):
    """The index converts each quantity with the cached conversions of its (unit, analyte)."""
    rng = random.Random(code)
    for value in [0.0, 1.0, 7.77, 140.0, -40.0, 1e-9, 123456.789] + [rng.uniform(-500, 500) for _ in range(50)]:
        forms = canonical_forms(value, code, analyte)
        assert forms[0] == canonicalize(value, code, analyte)  # exactly: no float drift
        rows = quantity.extract({"value": value, "system": "http://unitsofmeasure.org", "code": code}, analyte)
        assert [(r["canonical_code"], r["canonical_value"]) for r in rows] == [(f.code, f.value) for f in forms]


def test_a_value_repeated_in_a_resource_gives_one_row(registry):
    """A value that several elements share (every entity of a merged AuditEvent has the same
    type and role) is one row of its parameter: a repeat would find nothing more."""
    same = {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}
    event = {"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2026-11-24T08:00:00Z",
             "agent": [{"requestor": True}], "source": {"observer": {"display": "county-fhir"}},
             "entity": [{"what": {"reference": f"Observation/o{i}"}, "type": same} for i in range(3)]}
    rows = Indexer(registry).rows(event)
    assert [r.values["code"] for r in rows if r.code == "entity-type"] == ["1"]
    assert sorted(r.values["target_id"] for r in rows if r.code == "entity") == ["o0", "o1", "o2"]
