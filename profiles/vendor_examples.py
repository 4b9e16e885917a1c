"""Vendor a few official FHIR example instances per supported resource type, for tests.

Run from the repository root (needs `npm` on PATH, reaches only the npm registry):

    python profiles/vendor_examples.py

It downloads ``hl7.fhir.r4.examples@4.0.1`` with ``npm pack`` and, for every type in
``profiles/fhir-r4b/supported-types.json``, copies up to ``PER_TYPE`` examples (unchanged) into
``tests/fixtures/spec-examples/``. Examples are chosen greedily for the number of distinct
element paths they add (so the tests see as many elements as possible), among files no larger
than ``MAX_BYTES``. Package, version, hashes and the chosen files are recorded in
``tests/fixtures/spec-examples/VENDORED.json``. The tests never touch the network.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vendor import npm_pack  # profiles/vendor.py, same folder

PACKAGE = "hl7.fhir.r4.examples"
VERSION = "4.0.1"
PER_TYPE = 2
MAX_BYTES = 40_000
ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ROOT / "profiles" / "fhir-r4b" / "supported-types.json"
TARGET = ROOT / "tests" / "fixtures" / "spec-examples"


def element_paths(node, prefix: str = "") -> set[str]:
    """Dotted element paths present in a JSON value (list indices dropped)."""
    if isinstance(node, list):
        return set().union(*(element_paths(item, prefix) for item in node))
    if not isinstance(node, dict):
        return {prefix}
    return set().union({prefix}, *(element_paths(v, f"{prefix}.{k}") for k, v in node.items()))


def candidates(tar: tarfile.TarFile, supported: set[str]) -> dict[str, list[tuple[str, bytes]]]:
    found: dict[str, list[tuple[str, bytes]]] = {t: [] for t in supported}
    for member in sorted(tar.getmembers(), key=lambda m: m.name):
        name = Path(member.name).name
        kind = name.split("-", 1)[0]
        if kind not in supported or not name.endswith(".json") or member.size > MAX_BYTES:
            continue
        raw = tar.extractfile(member).read()
        if json.loads(raw).get("resourceType") == kind:
            found[kind].append((name, raw))
    return found


def choose(examples: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    chosen, seen = [], set()
    pool = [(name, raw, element_paths(json.loads(raw))) for name, raw in examples]
    while pool and len(chosen) < PER_TYPE:
        best = max(pool, key=lambda c: (len(c[2] - seen), -len(c[1])))
        pool.remove(best)
        chosen.append(best[:2])
        seen |= best[2]
    return chosen


def main() -> int:
    supported = set(json.loads(SUPPORTED.read_text())["types"])
    TARGET.mkdir(parents=True, exist_ok=True)
    for old in TARGET.glob("*.json"):
        old.unlink()
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        tgz = npm_pack(PACKAGE, VERSION, Path(tmp))
        digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
        with tarfile.open(tgz) as tar:
            found = candidates(tar, supported)
    for kind in sorted(found):
        for name, raw in choose(found[kind]):
            (TARGET / name).write_bytes(raw)
            files[name] = hashlib.sha256(raw).hexdigest()
    missing = sorted(k for k, v in found.items() if not v)
    record = {
        "package": PACKAGE,
        "version": VERSION,
        "package_sha256": digest,
        "script": "profiles/vendor_examples.py",
        "per_type": PER_TYPE,
        "max_bytes": MAX_BYTES,
        "types_without_examples": missing,
        "files": files,
    }
    (TARGET / "VENDORED.json").write_text(json.dumps(record, indent=2) + "\n")
    total = sum((TARGET / n).stat().st_size for n in files)
    print(f"vendored {len(files)} examples ({total} bytes) from {PACKAGE}@{VERSION}; "
          f"no examples for: {', '.join(missing) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
