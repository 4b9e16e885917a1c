"""Check a resource against the county profiles it claims (or one named by the caller).

``ProfileValidator.validate(resource)`` returns ``Issue``\\s (fhir_server.errors), each naming
the element in FHIRPath (``Patient.identifier[0].value``) and saying what was expected:

- cardinality, fixed and pattern values, allowed types of choice elements;
- slices, told apart by their ``value`` / ``pattern`` discriminators, each with its own
  cardinality and rules; values that match no slice of a ``closed`` slicing are errors;
- bindings the profile sets, asked of the terminology service (required: error,
  extensible: warning);
- reference target types; the profile's FHIRPath invariants;
- every extension whose URL is under the county's canonical base: it must be a known
  extension definition, used where its context allows, with a value its definition allows.

Profiles are compiled on first use (``rules.compile_profile``) and kept.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Protocol

from fhirpathpy.models import models

from fhir_server.errors import Issue, NotFound
from fhir_server.search.fhirpath import reference_type
from fhir_server.validation.rules import ElementRule, Slice, compile_profile

__all__ = ["ProfileValidator", "Terminology", "LOCAL_CANONICAL_BASE"]

LOCAL_CANONICAL_BASE = "https://county-fhir.example.org/fhir/StructureDefinition/"
_PATH_TYPES: dict[str, str] = models["r4"]["path2Type"]
_BINDING_CACHE_LIMIT = 50_000


class Terminology(Protocol):
    """The one terminology verb the validator needs (fhir_server/terminology provides it)."""

    def validate_code(self, valueset_url: str, system: str | None, code: str,
                      display: str | None = None) -> Any: ...  # has .result (bool) and .message


def _plural(values: object) -> list:
    if values is None:
        return []
    return values if isinstance(values, list) else [values]


def _contains(value: object, pattern: object) -> bool:
    """FHIR pattern matching: every part of ``pattern`` is present in ``value``."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and _contains(value[key], part) for key, part in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(_contains(v, p) for v in value) for p in pattern)
    return value == pattern


def _at(value: object, path: str) -> list:
    if path == "$this":
        return [value]
    found = [value]
    for step in path.split("."):
        found = [item for v in found if isinstance(v, dict) for item in _plural(v.get(step))]
    return found


def _describe(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ProfileValidator:
    def __init__(self, definitions: list[dict], terminology: Terminology | None = None):
        self.definitions = {d["url"]: d for d in definitions}
        self.profile_types = {d["url"]: d["type"] for d in definitions}
        self.extension_contexts = {
            d["url"]: {c["expression"] for c in d.get("context", [])}
            for d in definitions if d["type"] == "Extension"}
        self.terminology = terminology
        self._rules: dict[str, ElementRule] = {}
        self._lock = threading.Lock()
        self._codes: dict[tuple, tuple[bool, str]] = {}

    @classmethod
    def from_directory(cls, directory: Path, terminology: Terminology | None = None) -> ProfileValidator:
        definitions = [json.loads(p.read_text(encoding="utf-8"))
                       for p in sorted(Path(directory).glob("StructureDefinition-*.json"))]
        return cls(definitions, terminology)

    # ---- the public surface ------------------------------------------------------------------
    def knows(self, url: str) -> bool:
        return url.split("|", 1)[0] in self.definitions

    def claimed(self, resource: dict) -> list[str]:
        """The local profiles a resource claims in ``meta.profile`` (others are ignored)."""
        meta = resource.get("meta")
        profiles = meta.get("profile") if isinstance(meta, dict) else None
        return [p.split("|", 1)[0] for p in _plural(profiles) if isinstance(p, str) and self.knows(p)]

    def validate(self, resource: dict, profiles: list[str] | None = None) -> list[Issue]:
        """Issues of ``resource`` against ``profiles`` (default: the local ones it claims)."""
        issues: list[Issue] = []
        rtype = resource.get("resourceType", "")
        for url in profiles if profiles is not None else self.claimed(resource):
            url = url.split("|", 1)[0]
            if self.profile_types.get(url) != rtype:
                issues.append(Issue("error", "invalid", f"{rtype}: the profile {url} is for "
                                    f"{self.profile_types.get(url, 'another type')}, not {rtype}", (rtype,)))
                continue
            root = self.rules(url)
            self._value(root, resource, rtype, issues)
        self._extensions(resource, rtype, rtype, issues)
        return issues

    def rules(self, url: str) -> ElementRule:
        rules = self._rules.get(url)
        if rules is None:
            with self._lock:
                rules = self._rules.get(url)
                if rules is None:
                    rules = compile_profile(self.definitions[url], self.profile_types)
                    self._rules[url] = rules
        return rules

    # ---- elements ----------------------------------------------------------------------------
    def _values(self, rule: ElementRule, holder: dict, location: str) -> list[tuple[str, object, str | None]]:
        """(location, value, type suffix of a choice) of every value ``rule`` governs in ``holder``."""
        if rule.choice:
            found = []
            for key, value in holder.items():
                suffix = key[len(rule.key):]
                if key.startswith(rule.key) and suffix[:1].isupper():
                    found.append((f"{location}.{key}", value, suffix))
            return found
        value = holder.get(rule.key)
        if isinstance(value, list):
            return [(f"{location}.{rule.key}[{i}]", v, None) for i, v in enumerate(value)]
        return [] if value is None else [(f"{location}.{rule.key}", value, None)]

    def _element(self, rule: ElementRule, holder: dict, location: str, issues: list[Issue]) -> None:
        values = self._values(rule, holder, location)
        self._count(rule, len(values), f"{location}.{rule.key}", issues)
        if rule.slices:
            self._sliced(rule, values, location, issues)
        for where, value, type_suffix in values:
            self._value(rule, value, where, issues, type_suffix)

    def _count(self, rule: ElementRule, count: int, where: str, issues: list[Issue],
               slice_name: str | None = None) -> None:
        label = f"{rule.path}" + (f" (slice {slice_name})" if slice_name else "")
        if count < rule.min:
            issues.append(Issue("error", "required",
                                f"{label}: at least {rule.min} expected, found {count}", (where,)))
        elif count > rule.max:
            issues.append(Issue("error", "structure",
                                f"{label}: at most {rule.max} allowed, found {count}", (where,)))

    def _sliced(self, rule: ElementRule, values: list, location: str, issues: list[Issue]) -> None:
        matched: dict[str, list] = {s.name: [] for s in rule.slices}
        for where, value, type_suffix in values:
            slice_ = next((s for s in rule.slices if self._matches(s, value)), None)
            if slice_ is not None:
                matched[slice_.name].append((where, value, type_suffix))
            elif rule.closed:
                issues.append(Issue("error", "structure", f"{rule.path}: {_describe(value)} matches none of "
                                    f"the allowed slices ({', '.join(matched)})", (where,)))
        for slice_ in rule.slices:
            found = matched[slice_.name]
            self._count(slice_.rule, len(found), f"{location}.{rule.key}", issues, slice_.name)
            for where, value, type_suffix in found:
                self._value(slice_.rule, value, where, issues, type_suffix)

    @staticmethod
    def _matches(slice_: Slice, value: object) -> bool:
        for path, kind, expected in slice_.keys:
            found = _at(value, path)
            if kind == "fixed" and expected not in found:
                return False
            if kind == "pattern" and not any(_contains(item, expected) for item in found):
                return False
        return True

    def _value(self, rule: ElementRule, value: object, where: str, issues: list[Issue],
               type_suffix: str | None = None) -> None:
        if not rule.busy:
            return
        if rule.types is not None and type_suffix is not None and type_suffix not in rule.types:
            allowed = " or ".join(sorted(f"{rule.key}{t}" for t in rule.types))
            issues.append(Issue("error", "structure", f"{rule.path}: {allowed} expected, "
                                f"not {rule.key}{type_suffix}", (where,)))
            return
        if rule.fixed is not None and value != rule.fixed:
            issues.append(Issue("error", "value", f"{rule.path}: the value {_describe(rule.fixed)} is required, "
                                f"found {_describe(value)}", (where,)))
        if rule.pattern is not None and not _contains(value, rule.pattern):
            issues.append(Issue("error", "value", f"{rule.path}: a value matching {_describe(rule.pattern)} "
                                f"is required, found {_describe(value)}", (where,)))
        if rule.binding is not None:
            self._binding(rule, value, where, issues)
        if rule.targets is not None and isinstance(value, dict):
            target = reference_type(value)
            if target is not None and target not in rule.targets:
                issues.append(Issue("error", "invalid", f"{rule.path}: a reference to "
                                    f"{' or '.join(sorted(rule.targets))} is expected, not {target}", (where,)))
        for invariant in rule.invariants:
            if not invariant.holds(value):
                issues.append(Issue("error" if invariant.severity == "error" else "warning", "invariant",
                                    f"{rule.path}: {invariant.key} failed: {invariant.human}", (where,)))
        if isinstance(value, dict):
            for child in rule.children:
                self._element(child, value, where, issues)

    # ---- bindings ----------------------------------------------------------------------------
    def _binding(self, rule: ElementRule, value: object, where: str, issues: list[Issue]) -> None:
        if self.terminology is None or rule.binding is None:
            return
        strength, value_set = rule.binding
        if strength not in ("required", "extensible"):
            return
        if isinstance(value, dict) and ("coding" in value or "text" in value):  # CodeableConcept
            codings = [c for c in _plural(value.get("coding")) if isinstance(c, dict)]
        elif isinstance(value, dict):  # Coding
            codings = [value]
        else:
            codings = [{"code": value}]
        verdicts = [self._code(value_set, c.get("system"), c["code"]) for c in codings
                    if isinstance(c.get("code"), str)]
        unchecked = [message for ok, message in verdicts if ok and message]
        if any(ok and not message for ok, message in verdicts):
            return
        if unchecked:
            issues.append(Issue("warning", "not-supported", f"{rule.path}: {unchecked[0]}", (where,)))
            return
        severity = "error" if strength == "required" else "warning"
        detail = "; ".join(message for _, message in verdicts if message) or "no code given"
        issues.append(Issue(severity, "code-invalid", f"{rule.path}: a code from the value set {value_set} "
                            f"is {'required' if strength == 'required' else 'expected'} ({detail})", (where,)))

    def _code(self, value_set: str, system: str | None, code: str) -> tuple[bool, str]:
        """(verdict, message) for one code, cached: the shipped value sets do not change while
        serving. A passing verdict with a message means "not checked", reported as a warning:
        a value set the terminology service does not hold, or a code system it holds only in
        part (LOINC, ICD-10 fragments), cannot prove a code wrong.
        """
        key = (value_set, system, code)
        verdict = self._codes.get(key)
        if verdict is None:
            verdict = self._ask(value_set, system, code)
            if len(self._codes) >= _BINDING_CACHE_LIMIT:
                self._codes.clear()
            self._codes[key] = verdict
        return verdict

    def _ask(self, value_set: str, system: str | None, code: str) -> tuple[bool, str]:
        has_value_set = getattr(self.terminology, "has_value_set", None)
        if has_value_set is not None and not has_value_set(value_set):
            return True, f"the value set {value_set} is not known to this server, so the code was not checked"
        try:
            outcome = self.terminology.validate_code(value_set, system, code)
        except NotFound as error:
            return True, f"{error.message}, so the code was not checked"
        if not outcome.result and getattr(outcome, "unknown_system", None):
            return True, f"{outcome.unknown_system} is only partly known here, so {code} was not checked"
        return bool(outcome.result), "" if outcome.result else (outcome.message or f"{code} is not in {value_set}")

    # ---- extensions --------------------------------------------------------------------------
    def _extensions(self, node: object, context: str, location: str, issues: list[Issue]) -> None:
        """Check every county extension in ``node``; ``context`` is its element path or type."""
        if isinstance(node, list):
            for i, item in enumerate(node):
                self._extensions(item, context, f"{location}[{i}]", issues)
            return
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key in ("extension", "modifierExtension"):
                for i, extension in enumerate(_plural(value)):
                    self._extension(extension, context, f"{location}.{key}[{i}]", issues)
            elif isinstance(value, (dict, list)) and key != "resourceType":
                name = key[1:] if key.startswith("_") else key
                if key == "contained":
                    for i, contained in enumerate(_plural(value)):
                        rtype = contained.get("resourceType", "") if isinstance(contained, dict) else ""
                        self._extensions(contained, rtype, f"{location}.contained[{i}]", issues)
                    continue
                child = f"{context}.{name}"
                child_type = _PATH_TYPES.get(child)
                inner = child_type if child_type and child_type[:1].isupper() and child_type not in (
                    "BackboneElement", "Element") else child
                self._extensions(value, inner, f"{location}.{key}", issues)

    def _extension(self, extension: object, context: str, where: str, issues: list[Issue]) -> None:
        if not isinstance(extension, dict):
            return
        url = extension.get("url", "")
        if url in self.extension_contexts:
            allowed = self.extension_contexts[url]
            if allowed and context not in allowed and "Element" not in allowed:
                issues.append(Issue("error", "extension", f"{url} is not allowed on {context} "
                                    f"(allowed on {', '.join(sorted(allowed))})", (where,)))
            self._value(self.rules(url), extension, where, issues)
        elif isinstance(url, str) and url.startswith(LOCAL_CANONICAL_BASE):
            issues.append(Issue("error", "extension", f"{url} is not a known county extension", (where,)))
