"""Vendor the base StructureDefinitions the county profiles are built on.

Run from the repository root (needs `npm` on PATH, reaches only the npm registry):

    python profiles/vendor_structures.py

It downloads ``hl7.fhir.r4b.core@4.3.0`` with ``npm pack`` (the same package as
``profiles/vendor.py``) and copies the StructureDefinitions of the profiled resource types and
of the datatypes whose children the profiles constrain to ``profiles/fhir-r4b/structures/``,
keeping the snapshot only (narrative, differential and mappings to other standards dropped).
Package, version and hashes go to ``profiles/fhir-r4b/VENDORED-structures.json``.
``profiles/build.py`` generates the county profiles' snapshots from these.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vendor import HERE, PACKAGE, VERSION, npm_pack

TARGET = HERE / "structures"
RESOURCES = (
    "Patient", "Observation", "Encounter", "CarePlan", "Group", "Organization", "Practitioner",
    "PractitionerRole", "Condition", "ServiceRequest", "Task", "DiagnosticReport",
)
DATATYPES = (
    "Extension", "Identifier", "HumanName", "Address", "CodeableConcept", "Coding", "Quantity",
    "Reference", "Period", "Range", "Timing", "ContactPoint", "Annotation",
)


def slim(definition: dict) -> dict:
    for drop in ("text", "contact", "mapping", "differential"):
        definition.pop(drop, None)
    for element in definition["snapshot"]["element"]:
        element.pop("mapping", None)
    return definition


def main() -> int:
    TARGET.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tgz = npm_pack(PACKAGE, VERSION, Path(tmp))
        digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
        files = {}
        with tarfile.open(tgz) as tar:
            for name in (*RESOURCES, *DATATYPES):
                member = f"package/StructureDefinition-{name}.json"
                definition = slim(json.load(tar.extractfile(member)))
                target = TARGET / f"StructureDefinition-{name}.json"
                target.write_text(json.dumps(definition, ensure_ascii=False, indent=1) + "\n",
                                  encoding="utf-8")
                files[f"structures/{target.name}"] = {
                    "source": member, "sha256": hashlib.sha256(target.read_bytes()).hexdigest()}
    record = {
        "package": PACKAGE,
        "version": VERSION,
        "package_sha256": digest,
        "files": files,
        "script": "profiles/vendor_structures.py",
    }
    (HERE / "VENDORED-structures.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"vendored {len(files)} StructureDefinitions from {PACKAGE}@{VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
