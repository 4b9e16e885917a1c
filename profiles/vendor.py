"""Vendor the parts of the official FHIR packages this server uses.

Run from the repository root (needs `npm` on PATH, reaches only the npm registry):

    python profiles/vendor.py

It downloads ``hl7.fhir.r4b.core@4.3.0`` with ``npm pack``, keeps the SearchParameters whose
base includes a supported resource type, writes them as one Bundle to
``profiles/fhir-r4b/search-parameters.json`` and records package, version and file hashes in
``profiles/fhir-r4b/VENDORED.json``. The list of supported types lives in
``profiles/fhir-r4b/supported-types.json`` so that the server and this script agree.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "hl7.fhir.r4b.core"
VERSION = "4.3.0"
HERE = Path(__file__).resolve().parent / "fhir-r4b"


def npm_pack(package: str, version: str, into: Path) -> Path:
    out = subprocess.run(
        ["npm", "pack", f"{package}@{version}", "--silent"],
        cwd=into, check=True, capture_output=True, text=True,
    )
    return into / out.stdout.strip().splitlines()[-1]


def search_parameters(tgz: Path, supported: set[str]) -> list[dict]:
    params = []
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if not (name.startswith("SearchParameter-") and name.endswith(".json")):
                continue
            sp = json.load(tar.extractfile(member))
            if sp["id"].startswith("example"):  # illustrations in the spec, not standard parameters
                continue
            bases = [b for b in sp.get("base", []) if b in supported or b in ("Resource", "DomainResource")]
            if not bases:
                continue
            for drop in ("text", "contact", "extension", "xpath", "xpathUsage", "publisher", "date"):
                sp.pop(drop, None)
            params.append(sp)
    params.sort(key=lambda sp: sp["id"])
    return params


def main() -> int:
    supported = set(json.loads((HERE / "supported-types.json").read_text())["types"])
    with tempfile.TemporaryDirectory() as tmp:
        tgz = npm_pack(PACKAGE, VERSION, Path(tmp))
        digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
        params = search_parameters(tgz, supported)
    bundle = {
        "resourceType": "Bundle",
        "id": "r4b-search-parameters",
        "type": "collection",
        "entry": [{"fullUrl": sp["url"], "resource": sp} for sp in params],
    }
    target = HERE / "search-parameters.json"
    target.write_text(json.dumps(bundle, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    record = {
        "package": PACKAGE,
        "version": VERSION,
        "package_sha256": digest,
        "files": {target.name: {"search_parameters": len(params),
                                "sha256": hashlib.sha256(target.read_bytes()).hexdigest()}},
        "script": "profiles/vendor.py",
    }
    (HERE / "VENDORED.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"vendored {len(params)} SearchParameters from {PACKAGE}@{VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
