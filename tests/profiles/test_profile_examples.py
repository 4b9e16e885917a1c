"""Every example under profiles/local/examples/: the valid ones pass their profile, and each
invalid one fails it with errors at exactly the element paths its index entry names."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from fhir_server.fhir.models import check_resource
from fhir_server.terminology import TerminologyService
from fhir_server.validation import ProfileValidator

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "profiles" / "local" / "examples"
INDEX = json.loads((EXAMPLES / "index.json").read_text(encoding="utf-8"))["examples"]


@pytest.fixture(scope="module")
def validator() -> ProfileValidator:
    return ProfileValidator.from_directory(ROOT / "profiles" / "local", TerminologyService.load(ROOT / "terminology"))


def _load(entry: dict) -> dict:
    return json.loads((EXAMPLES / entry["file"]).read_text(encoding="utf-8"))


def test_every_resource_profile_has_a_valid_and_several_invalid_examples(validator):
    profiles = {url for url, d in validator.definitions.items() if d["type"] != "Extension"}
    valid = Counter(e["profile"] for e in INDEX if e["valid"])
    invalid = Counter(e["profile"] for e in INDEX if not e["valid"])
    assert profiles == set(valid)
    assert {p: n for p, n in invalid.items() if n < 2} == {}
    assert set(invalid) == profiles


@pytest.mark.parametrize("entry", [e for e in INDEX if e["valid"]], ids=lambda e: e["file"])
def test_valid_example_passes(entry, validator):
    resource = check_resource(_load(entry))  # valid FHIR R4B first
    assert validator.claimed(resource) == [entry["profile"]]
    errors = [i.to_fhir() for i in validator.validate(resource) if i.severity == "error"]
    assert errors == []


@pytest.mark.parametrize("entry", [e for e in INDEX if not e["valid"]], ids=lambda e: e["file"])
def test_invalid_example_fails_at_the_named_elements(entry, validator):
    resource = check_resource(_load(entry))  # valid FHIR: only the profile is broken
    issues = [i for i in validator.validate(resource) if i.severity == "error"]
    assert sorted({path for issue in issues for path in issue.expression}) == sorted(entry["errors"])
    assert all(issue.diagnostics for issue in issues)
