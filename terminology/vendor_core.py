"""Vendor the FHIR core value sets that the base resources bind with strength ``required``.

Run from the repository root (needs ``npm`` on PATH, reaches only the npm registry):

    python terminology/vendor_core.py

It reads the required bindings of the base StructureDefinitions the county profiles are built
on (``profiles/fhir-r4b/structures/``, see ``profiles/vendor_structures.py``), downloads
``hl7.fhir.r4b.core@4.3.0`` and copies each bound ValueSet whose members can be listed -- no
filters, every code system it draws on in the package and complete -- with the value sets it
imports and those code systems, to ``terminology/fhir-r4b/`` (narrative dropped). Package,
version, file hashes and the required bindings left out, with the reason, go to
``terminology/fhir-r4b/VENDORED.json``. The terminology service loads these like the county's
own files, so the profile validator can check codes such as ``Patient.gender``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "profiles"))

from vendor import PACKAGE, VERSION, npm_pack  # noqa: E402

STRUCTURES = ROOT / "profiles" / "fhir-r4b" / "structures"
TARGET = Path(__file__).resolve().parent / "fhir-r4b"


def required_value_sets() -> set[str]:
    found = set()
    for path in sorted(STRUCTURES.glob("StructureDefinition-*.json")):
        for element in json.loads(path.read_text(encoding="utf-8"))["snapshot"]["element"]:
            binding = element.get("binding") or {}
            if binding.get("strength") == "required" and binding.get("valueSet"):
                found.add(binding["valueSet"].split("|")[0])
    return found


def package_resources(tgz: Path) -> dict[str, dict]:
    """The package's ValueSets and CodeSystems by canonical URL."""
    found = {}
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if name.startswith(("ValueSet-", "CodeSystem-")) and name.endswith(".json"):
                resource = json.load(tar.extractfile(member))
                found[resource["url"]] = resource
    return found


def closure(url: str, package: dict[str, dict], chosen: dict[str, dict]) -> str | None:
    """Add the value set ``url`` and what it needs to ``chosen``; the reason when it cannot be listed."""
    value_set = package.get(url)
    if value_set is None or value_set.get("resourceType") != "ValueSet":
        return "not in the package"
    needed = {url: value_set}
    for include in (value_set.get("compose") or {}).get("include", []) + \
            (value_set.get("compose") or {}).get("exclude", []):
        if include.get("filter"):
            return "defined by a filter"
        system = include.get("system")
        if system:
            code_system = package.get(system)
            if code_system is None or code_system.get("resourceType") != "CodeSystem":
                return f"draws on {system}, which is not in the package"
            if code_system.get("content") != "complete" and not include.get("concept"):
                return f"includes all of {system}, which the package holds only in part"
            needed[system] = code_system
        for imported in include.get("valueSet", []):
            reason = closure(imported.split("|")[0], package, chosen)
            if reason:
                return f"imports {imported}, which is {reason}"
    chosen.update(needed)
    return None


def slim(resource: dict) -> dict:
    for drop in ("text", "contact", "extension", "expansion"):
        resource.pop(drop, None)
    return resource


def main() -> int:
    wanted = required_value_sets()
    with tempfile.TemporaryDirectory() as tmp:
        tgz = npm_pack(PACKAGE, VERSION, Path(tmp))
        digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
        package = package_resources(tgz)
    chosen: dict[str, dict] = {}
    left_out = {url: reason for url in sorted(wanted) if (reason := closure(url, package, chosen))}
    TARGET.mkdir(exist_ok=True)
    for old in TARGET.glob("*-*.json"):
        old.unlink()
    files = {}
    for resource in sorted(chosen.values(), key=lambda r: (r["resourceType"], r["id"])):
        path = TARGET / f"{resource['resourceType']}-{resource['id']}.json"
        path.write_text(json.dumps(slim(resource), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    record = {"package": PACKAGE, "version": VERSION, "package_sha256": digest,
              "script": "terminology/vendor_core.py", "files": files, "left_out": left_out}
    (TARGET / "VENDORED.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"vendored {len(files)} ValueSets and CodeSystems for {len(wanted) - len(left_out)} of "
          f"{len(wanted)} required bindings from {PACKAGE}@{VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
