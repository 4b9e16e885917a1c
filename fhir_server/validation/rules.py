"""A profile's snapshot compiled into a tree of element rules, once per profile.

Only what the profile itself constrains is kept: the elements its differential names, their
slices, and the ancestors needed to reach them. Everything else in the snapshot is the base
definition, which the fhir.resources models already enforce on every write, so walking it
again would cost time and find nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.validation.invariants import Invariant, compile_invariant

__all__ = ["ElementRule", "Slice", "compile_profile", "UNBOUNDED"]

UNBOUNDED = 1 << 30
CORE = "http://hl7.org/fhir/StructureDefinition/"


@dataclass
class Slice:
    name: str
    rule: ElementRule
    # (discriminator path, "fixed" | "pattern", expected value) for every discriminator
    keys: list[tuple[str, str, object]]


@dataclass
class ElementRule:
    """What one element of a profile requires of every value found at its path."""

    path: str  # the element path, e.g. Patient.identifier.value
    key: str  # the JSON key: "identifier", or the prefix of a choice ("value" of value[x])
    choice: bool = False
    min: int = 0
    max: int = UNBOUNDED
    types: frozenset[str] | None = None  # allowed choice suffixes ("Quantity", "DateTime"), if restricted
    fixed: object = None
    pattern: object = None
    binding: tuple[str, str] | None = None  # (strength, value set) from the profile
    targets: frozenset[str] | None = None  # resource types a Reference may point at
    invariants: list[Invariant] = field(default_factory=list)
    children: list[ElementRule] = field(default_factory=list)
    slices: list[Slice] = field(default_factory=list)
    closed: bool = False  # slicing rules "closed": every value must match a slice
    slice_name: str | None = None

    @property
    def busy(self) -> bool:
        """True when a value at this element has something to check beyond its count."""
        return bool(self.types or self.fixed is not None or self.pattern is not None or self.binding
                    or self.targets or self.invariants or self.children or self.slices)


def _fixed_or_pattern(element: dict, prefix: str) -> object:
    for name, value in element.items():
        if name.startswith(prefix) and name[len(prefix):][:1].isupper():
            return value
    return None


def compile_profile(definition: dict, profile_types: dict[str, str]) -> ElementRule:
    """The root rule of ``definition`` (a StructureDefinition with a snapshot).

    ``profile_types`` maps the canonical URL of every local profile to the type it profiles,
    so that a Reference restricted to a local profile still names its resource type.
    """
    elements = definition["snapshot"]["element"]
    differential = {e["id"]: e for e in definition["differential"]["element"]}
    constrained = set(differential)
    keep = set()
    for element_id in constrained:
        keep.add(element_id)
        parts = element_id.split(".")
        for i in range(1, len(parts) + 1):
            keep.add(".".join(parts[:i]))
            keep.add(".".join([*parts[:i - 1], parts[i - 1].split(":")[0]]))  # the sliced element
    by_id = {e["id"]: e for e in elements if e["id"] in keep}
    rules: dict[str, ElementRule] = {}
    root = None
    for element_id, element in by_id.items():
        rule = _rule(element, differential.get(element_id), definition["url"], profile_types)
        if definition["type"] == "Extension":  # say which extension: Extension(visit-mode).value[x]
            rule.path = f"Extension({definition['id']})" + rule.path[len("Extension"):]
        rules[element_id] = rule
        parent_id, _, last = element_id.rpartition(".")
        if not parent_id:
            root = rule
            continue
        if ":" in last:
            sliced = rules[f"{parent_id}.{last.split(':')[0]}"]
            sliced.slices.append(Slice(rule.slice_name or "", rule, []))
        else:
            rules[parent_id].children.append(rule)
    for element_id, element in by_id.items():
        if "slicing" in element:
            _discriminate(rules[element_id], element, by_id, elements)
    assert root is not None
    return root


def _rule(element: dict, diff: dict | None, source: str, profile_types: dict[str, str]) -> ElementRule:
    """The rule of one snapshot element; types, fixed and pattern values, bindings and
    reference targets count only when the profile's own differential sets them."""
    last = element["path"].rsplit(".", 1)[-1]
    choice = last.endswith("[x]")
    rule = ElementRule(
        path=element["path"], key=last[:-3] if choice else last, choice=choice,
        min=element.get("min", 0),
        max=UNBOUNDED if element.get("max", "*") == "*" else int(element["max"]),
        slice_name=element.get("sliceName"),
        closed=element.get("slicing", {}).get("rules") == "closed",
    )
    rule.invariants = [compile_invariant(c) for c in element.get("constraint", [])
                       if c.get("source") == source and c.get("expression")]
    if diff is None:
        return rule
    types = diff.get("type", [])
    if choice and types:
        rule.types = frozenset(t["code"][:1].upper() + t["code"][1:] for t in types)  # as in valueQuantity
    rule.fixed = _fixed_or_pattern(diff, "fixed")
    rule.pattern = _fixed_or_pattern(diff, "pattern")
    if "binding" in diff and diff["binding"].get("valueSet"):
        rule.binding = (diff["binding"]["strength"], diff["binding"]["valueSet"])
    targets = [p for t in types if t["code"] == "Reference" for p in t.get("targetProfile", [])]
    if targets:
        rule.targets = frozenset(profile_types.get(p, p.rsplit("/", 1)[-1]) for p in targets)
    return rule


def _discriminate(sliced: ElementRule, element: dict, by_id: dict[str, dict], elements: list[dict]) -> None:
    """Work out, for each slice, the values its discriminators must have."""
    everything = {e["id"]: e for e in elements}
    for slice_ in sliced.slices:
        slice_id = f"{element['id']}:{slice_.name}"
        for discriminator in element["slicing"].get("discriminator", []):
            path = discriminator["path"]
            if path == "url" and _extension_profile(everything[slice_id]):
                slice_.keys.append(("url", "fixed", _extension_profile(everything[slice_id])))
                continue
            target = everything.get(slice_id if path == "$this" else f"{slice_id}.{path}", {})
            fixed, pattern = _fixed_or_pattern(target, "fixed"), _fixed_or_pattern(target, "pattern")
            if fixed is not None:
                slice_.keys.append((path, "fixed", fixed))
            elif pattern is not None:
                slice_.keys.append((path, "pattern", pattern))
            elif _inside(everything[slice_id], path) is not None:  # e.g. patternCoding.system
                slice_.keys.append((path, "pattern", _inside(everything[slice_id], path)))
            else:
                raise ValueError(f"slice {slice_id} has no value for its discriminator {path!r}")


def _inside(element: dict, path: str) -> object:
    """The part at ``path`` of the element's own fixed or pattern value, if it has one."""
    value = _fixed_or_pattern(element, "fixed") or _fixed_or_pattern(element, "pattern")
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    return value


def _extension_profile(element: dict) -> str | None:
    for type_ in element.get("type", []):
        if type_.get("code") == "Extension" and type_.get("profile"):
            return type_["profile"][0]
    return None
