"""Vendor the Patient CompartmentDefinition used by ``Patient/[id]/$everything``.

Run from the repository root (needs `npm` on PATH, reaches only the npm registry):

    python profiles/vendor_compartment.py

It downloads ``hl7.fhir.r4b.core@4.3.0`` with ``npm pack`` (the same package as
``profiles/vendor.py``), copies ``package/CompartmentDefinition-patient.json`` (narrative
dropped) to ``profiles/fhir-r4b/compartment-patient.json`` and records package, version and
hashes in ``profiles/fhir-r4b/VENDORED-compartment.json``.
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

MEMBER = "package/CompartmentDefinition-patient.json"
TARGET = HERE / "compartment-patient.json"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tgz = npm_pack(PACKAGE, VERSION, Path(tmp))
        digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
        with tarfile.open(tgz) as tar:
            definition = json.load(tar.extractfile(MEMBER))
    for drop in ("text", "contact", "extension"):
        definition.pop(drop, None)
    TARGET.write_text(json.dumps(definition, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    record = {
        "package": PACKAGE,
        "version": VERSION,
        "package_sha256": digest,
        "files": {TARGET.name: {"source": MEMBER,
                                "sha256": hashlib.sha256(TARGET.read_bytes()).hexdigest()}},
        "script": "profiles/vendor_compartment.py",
    }
    (HERE / "VENDORED-compartment.json").write_text(json.dumps(record, indent=2) + "\n")
    members = sum(1 for r in definition.get("resource", []) if r.get("param"))
    print(f"vendored the Patient compartment ({members} member types) from {PACKAGE}@{VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
