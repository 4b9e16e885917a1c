"""Build the county profiles: snapshots from differentials, then the HTML guide.

Run from the repository root after editing a differential under ``profiles/local/``:

    python profiles/build.py          # rewrite the snapshots and profiles/guide/
    python profiles/build.py --check  # exit 1 when a committed snapshot or page is stale

Each ``profiles/local/StructureDefinition-*.json`` holds a ``differential`` written by hand.
Its ``snapshot`` is generated against the base definitions vendored from
``hl7.fhir.r4b.core@4.3.0`` (``profiles/fhir-r4b/structures/``, see vendor_structures.py):

1. start from the base type's snapshot;
2. for each differential element, find the snapshot element with the same ``id``; when it is
   missing, make it: a slice (``Patient.identifier:residentId``) is a copy of the sliced
   element and its children, placed after the sliced element's earlier slices; a child of a
   datatype element (``...residentId.system``) comes from unfolding that datatype's own
   snapshot below the element;
3. copy the differential's properties onto it; invariants are appended, with ``source`` set
   to the profile, so the validator can tell them from the base ones.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCAL = HERE / "local"
STRUCTURES = HERE / "fhir-r4b" / "structures"
GUIDE = HERE / "guide"
CORE = "http://hl7.org/fhir/StructureDefinition/"

sys.path.insert(0, str(HERE))

from guide import render_guide  # noqa: E402


class SnapshotError(ValueError):
    """A differential names an element the base definitions do not have."""


def load_bases() -> dict[str, dict]:
    bases = {}
    for path in STRUCTURES.glob("StructureDefinition-*.json"):
        definition = json.loads(path.read_text(encoding="utf-8"))
        bases[definition["url"]] = definition
    return bases


def _subtree_end(elements: list[dict], index: int) -> int:
    """Index just past the element at ``index``, its children and its slices."""
    root = elements[index]["id"]
    end = index + 1
    while end < len(elements) and elements[end]["id"].startswith((root + ".", root + ":")):
        end += 1
    return end


def _find(elements: list[dict], element_id: str) -> int | None:
    for index, element in enumerate(elements):
        if element["id"] == element_id:
            return index
    return None


class SnapshotBuilder:
    def __init__(self, bases: dict[str, dict]):
        self.bases = bases

    def datatype(self, code: str) -> dict:
        definition = self.bases.get(CORE + code)
        if definition is None:
            raise SnapshotError(f"no vendored StructureDefinition for datatype {code}")
        return definition

    def build(self, profile: dict) -> list[dict]:
        base = self.bases.get(profile["baseDefinition"])
        if base is None:
            raise SnapshotError(f"{profile['url']}: base {profile['baseDefinition']} is not vendored")
        elements = copy.deepcopy(base["snapshot"]["element"])
        for diff in profile["differential"]["element"]:
            index = self.locate(elements, diff["id"])
            self.merge(elements[index], diff, profile["url"])
        return elements

    def locate(self, elements: list[dict], element_id: str) -> int:
        index = _find(elements, element_id)
        if index is not None:
            return index
        parent_id, _, last = element_id.rpartition(".")
        if not parent_id:
            raise SnapshotError(f"unknown root element {element_id}")
        if ":" in last:
            return self.add_slice(elements, parent_id, last)
        parent = self.locate(elements, parent_id)
        if _subtree_end(elements, parent) > parent + 1 and elements[parent + 1]["id"].startswith(parent_id + "."):
            raise SnapshotError(f"{element_id} is not an element of {parent_id}")
        self.unfold(elements, parent)
        index = _find(elements, element_id)
        if index is None:
            raise SnapshotError(f"{element_id} is not an element of {parent_id}")
        return index

    def add_slice(self, elements: list[dict], parent_id: str, last: str) -> int:
        name, slice_name = last.split(":", 1)
        sliced_id = f"{parent_id}.{name}"
        sliced = self.locate(elements, sliced_id)
        end = _subtree_end(elements, sliced)
        children = [e for e in elements[sliced:end] if e["id"] == sliced_id or e["id"].startswith(sliced_id + ".")]
        new_id = f"{sliced_id}:{slice_name}"
        copies = copy.deepcopy(children)
        for element in copies:
            element["id"] = new_id + element["id"][len(sliced_id):]
        copies[0].pop("slicing", None)
        copies[0]["sliceName"] = slice_name
        elements[end:end] = copies
        return end

    def unfold(self, elements: list[dict], index: int) -> None:
        """Put the children of a datatype element's type below it."""
        element = elements[index]
        codes = {t["code"] for t in element.get("type", [])}
        if len(codes) != 1:
            raise SnapshotError(f"{element['id']} has no single type to unfold ({sorted(codes)})")
        code = codes.pop()
        children = copy.deepcopy(self.datatype(code)["snapshot"]["element"][1:])
        for child in children:
            child["id"] = element["id"] + child["id"][len(code):]
            child["path"] = element["path"] + child["path"][len(code):]
        elements[index + 1:index + 1] = children

    @staticmethod
    def merge(element: dict, diff: dict, source: str) -> None:
        for key, value in diff.items():
            if key in ("id", "path"):
                continue
            if key == "constraint":
                element.setdefault("constraint", []).extend(
                    {**constraint, "source": source} for constraint in value)
            else:
                element[key] = copy.deepcopy(value)


def local_definitions() -> list[tuple[Path, dict]]:
    return [(path, json.loads(path.read_text(encoding="utf-8")))
            for path in sorted(LOCAL.glob("StructureDefinition-*.json"))]


def built(definition: dict, builder: SnapshotBuilder) -> dict:
    elements = builder.build(definition)
    order = {element["id"]: i for i, element in enumerate(elements)}
    result = dict(definition)
    result.pop("snapshot", None)
    result["differential"] = {"element": sorted(definition["differential"]["element"],
                                                key=lambda e: order[e["id"]])}
    result["snapshot"] = {"element": elements}
    return result


def dump(resource: dict) -> str:
    return json.dumps(resource, ensure_ascii=False, indent=1) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    builder = SnapshotBuilder(load_bases())
    outputs: dict[Path, str] = {}
    definitions = []
    for path, definition in local_definitions():
        result = built(definition, builder)
        definitions.append(result)
        outputs[path] = dump(result)
    for name, page in render_guide(definitions, LOCAL / "examples").items():
        outputs[GUIDE / name] = page
    stale = [path for path, text in outputs.items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    if check:
        for path in stale:
            print(f"stale: {path.relative_to(HERE.parent)}")
        return 1 if stale else 0
    GUIDE.mkdir(exist_ok=True)
    for path in stale:
        path.write_text(outputs[path], encoding="utf-8")
    print(f"built {len(definitions)} StructureDefinitions and {len(outputs) - len(definitions)} guide pages "
          f"({len(stale)} files changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
