"""The county hospital's local lab codes and their map to LOINC, generated from one CSV table.

The laboratory manager edits ``terminology/conceptmaps/county-hospital-lab-to-loinc.csv``
(one row per local test: local code, Chinese and English names, unit, LOINC code and name,
FHIR R4 ``equivalence``, comment; a row without a LOINC code is ``unmatched``). Then::

    python -m fhir_server.terminology.lab_map

rewrites the two resources the server loads: the local CodeSystem
(``codesystems/county-hospital-lab.json``) and the ConceptMap
(``conceptmaps/county-hospital-lab-to-loinc.json``). A test checks that the JSON files are
what the table generates, so the two cannot drift apart.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from fhir_server.settings import PROJECT_ROOT

BASE = "https://county-fhir.example.org/fhir"
LOINC = "http://loinc.org"
TABLE = Path("conceptmaps/county-hospital-lab-to-loinc.csv")
CODE_SYSTEM_FILE = Path("codesystems/county-hospital-lab.json")
CONCEPT_MAP_FILE = Path("conceptmaps/county-hospital-lab-to-loinc.json")
CODE_SYSTEM_URL = f"{BASE}/CodeSystem/county-hospital-lab"
VERSION = "0.1.0"
_GENERATED = (f"Generated from terminology/{TABLE.as_posix()} by `python -m fhir_server.terminology.lab_map`: "
              "edit the table, not this file.")


def read_table(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [{key: (value or "").strip() for key, value in row.items()} for row in csv.DictReader(handle)]


def code_system(rows: list[dict[str, str]]) -> dict:
    return {
        "resourceType": "CodeSystem", "id": "county-hospital-lab", "url": CODE_SYSTEM_URL,
        "version": VERSION, "name": "CountyHospitalLab", "title": "County hospital laboratory codes (县医院检验项目)",
        "status": "active", "experimental": False, "publisher": "county-fhir",
        "description": f"The local test codes of the county hospital's laboratory system (LIS). {_GENERATED}",
        "caseSensitive": True, "content": "complete", "count": len(rows),
        "property": [{"code": "unit", "description": "The unit the laboratory reports the result in",
                      "type": "string"}],
        "concept": [{
            "code": row["local_code"], "display": row["local_display_en"],
            "designation": [{"language": "zh-CN", "value": row["local_display_zh"]}],
            **({"property": [{"code": "unit", "valueString": row["unit"]}]} if row["unit"] else {}),
        } for row in rows],
    }


def concept_map(rows: list[dict[str, str]]) -> dict:
    return {
        "resourceType": "ConceptMap", "id": "county-hospital-lab-to-loinc",
        "url": f"{BASE}/ConceptMap/county-hospital-lab-to-loinc", "version": VERSION,
        "name": "CountyHospitalLabToLoinc", "title": "County hospital laboratory codes to LOINC (检验项目对照)",
        "status": "active", "experimental": False, "publisher": "county-fhir",
        "description": f"Maps the county hospital's local laboratory codes to LOINC. {_GENERATED}",
        "sourceUri": f"{BASE}/ValueSet/county-hospital-lab",
        "targetUri": f"{BASE}/ValueSet/loinc-code",
        "group": [{"source": CODE_SYSTEM_URL, "target": LOINC, "element": [_element(row) for row in rows]}],
    }


def _element(row: dict[str, str]) -> dict:
    target: dict = {"equivalence": row["equivalence"] or ("equivalent" if row["loinc_code"] else "unmatched")}
    if row["loinc_code"]:
        target = {"code": row["loinc_code"], "display": row["loinc_display"], **target}
    if row["comment"]:
        target["comment"] = row["comment"]
    return {"code": row["local_code"], "display": row["local_display_en"], "target": [target]}


def generate(terminology_dir: Path) -> dict[Path, dict]:
    """The generated resources, keyed by their file path under ``terminology_dir``."""
    rows = read_table(terminology_dir / TABLE)
    return {CODE_SYSTEM_FILE: code_system(rows), CONCEPT_MAP_FILE: concept_map(rows)}


def render(resource: dict) -> str:
    return json.dumps(resource, ensure_ascii=False, indent=2) + "\n"


def main(terminology_dir: Path = PROJECT_ROOT / "terminology") -> int:
    for path, resource in generate(terminology_dir).items():
        (terminology_dir / path).write_text(render(resource), encoding="utf-8")
        print(f"wrote {terminology_dir / path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
