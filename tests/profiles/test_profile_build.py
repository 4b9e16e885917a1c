"""profiles/build.py: snapshots generated from the differentials against the vendored base."""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path

import pytest

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
sys.path.insert(0, str(PROFILES))

import build  # noqa: E402  (profiles/build.py)

LOCAL = "https://county-fhir.example.org/fhir/StructureDefinition/"


@pytest.fixture(scope="module")
def builder() -> build.SnapshotBuilder:
    return build.SnapshotBuilder(build.load_bases())


def _definition(name: str) -> dict:
    return json.loads((PROFILES / "local" / f"StructureDefinition-{name}.json").read_text(encoding="utf-8"))


def test_committed_snapshots_and_guide_are_what_build_makes():
    assert build.main(["--check"]) == 0, "run: python profiles/build.py"


def test_vendored_base_definitions_are_recorded_with_package_and_hashes():
    record = json.loads((PROFILES / "fhir-r4b" / "VENDORED-structures.json").read_text())
    assert (record["package"], record["version"]) == ("hl7.fhir.r4b.core", "4.3.0")
    bases = build.load_bases()
    for name, entry in record["files"].items():
        path = PROFILES / "fhir-r4b" / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], name
    needed = {d["baseDefinition"] for _, d in build.local_definitions()}
    assert needed <= set(bases)


def test_every_profile_is_a_constraint_on_r4b_with_a_differential_and_snapshot():
    for _, definition in build.local_definitions():
        assert definition["derivation"] == "constraint"
        assert definition["fhirVersion"] == "4.3.0"
        assert definition["url"] == LOCAL + definition["id"]
        assert definition["differential"]["element"] and definition["snapshot"]["element"]


def test_a_slice_follows_its_sliced_element_with_the_datatype_children(builder):
    elements = builder.build(_definition("county-patient"))
    ids = [e["id"] for e in elements]
    sliced = ids.index("Patient.identifier")
    resident = ids.index("Patient.identifier:residentId")
    assert sliced < resident < ids.index("Patient.identifier:healthRecordNumber") < ids.index("Patient.active")
    # Identifier's own children unfolded below the slice, with the profile's constraints on them
    value = elements[ids.index("Patient.identifier:residentId.value")]
    assert value["path"] == "Patient.identifier.value" and value["min"] == 1
    assert [c["key"] for c in value["constraint"] if c.get("source") == LOCAL + "county-patient"] == [
        "cn-id-1", "cn-id-2"]
    # the base element keeps its base invariants, the profile adds none to them
    assert all(c["source"].startswith("http://hl7.org/") for c in elements[sliced].get("constraint", []))


def test_the_snapshot_keeps_every_base_element(builder):
    base = build.load_bases()["http://hl7.org/fhir/StructureDefinition/Observation"]
    elements = builder.build(_definition("county-blood-pressure"))
    assert {e["id"] for e in base["snapshot"]["element"]} <= {e["id"] for e in elements}
    systolic = next(e for e in elements if e["id"] == "Observation.component:systolic.code")
    assert systolic["patternCodeableConcept"]["coding"][0]["code"] == "8480-6"


def test_a_differential_naming_an_unknown_element_is_refused(builder):
    definition = copy.deepcopy(_definition("county-patient"))
    definition["differential"]["element"].append({"id": "Patient.favouriteColour", "path": "Patient.favouriteColour",
                                                  "min": 1})
    with pytest.raises(build.SnapshotError, match="favouriteColour"):
        builder.build(definition)
