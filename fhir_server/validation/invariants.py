"""FHIRPath invariants of the county profiles, compiled once.

The invariants run on every write of a profiled resource, and fhirpathpy costs tenths of a
millisecond per expression (the GB 11643 check digit, a 17-term weighted sum: ~0.7 ms). So the
expressions of the profiles that are written often have Python forms: ``NATIVE`` for exact
expressions (the check digit, lab-1, lab-2), and three shapes recognised in any expression:
``matches('...')`` (Python's ``re``), ``a.exists() or b.exists()`` and the unit rules
``system = '...' and (code = '...' or ...)`` and ``$this >= 0`` on numbers. Anything else
goes through fhirpathpy.
tests/validation/test_invariants.py checks each form against fhirpathpy on valid and invalid
values, so the FHIRPath text stays the definition, and lists the invariants left to fhirpathpy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import fhirpathpy
from fhirpathpy.models import models

from fhir_server.identifiers import RESIDENT_ID_CHECK_CHARACTERS, RESIDENT_ID_WEIGHTS

__all__ = ["Invariant", "compile_invariant", "RESIDENT_ID_EXPRESSION", "NATIVE"]

_R4 = models["r4"]


def _resident_id_expression() -> str:
    weighted = " + ".join(f"substring({i}, 1).toInteger() * {w}" for i, w in enumerate(RESIDENT_ID_WEIGHTS))
    return (f"matches('^[0-9]{{17}}[0-9X]$').not() or '{RESIDENT_ID_CHECK_CHARACTERS}'.substring(("
            f"{weighted}) mod 11, 1) = substring(17, 1)")


# The resident-ID invariant of county-patient (cn-id-1), evaluated on Identifier.value: a
# value shaped like a resident ID must carry the right check character.
RESIDENT_ID_EXPRESSION = _resident_id_expression()


def _resident_id_check(value: object) -> list[bool]:
    if not isinstance(value, str):
        return []
    body, check = value[:17], value[17:]
    if len(value) != 18 or not (body.isascii() and body.isdigit()) or check not in "0123456789X":
        return [True]  # not shaped like a resident ID: the shape is another rule's job
    total = sum(int(digit) * weight for digit, weight in zip(body, RESIDENT_ID_WEIGHTS, strict=True))
    return [RESIDENT_ID_CHECK_CHARACTERS[total % 11] == check]


UCUM = "http://unitsofmeasure.org"


def _present(holder: object, name: str) -> bool:
    """FHIRPath ``name.exists()`` on a JSON element: a value, or a primitive's ``_name`` extension."""
    if not isinstance(holder, dict):
        return False
    return any(holder.get(key) not in (None, [], {}) for key in (name, f"_{name}"))


def _lab_performer_is_organization(value: object) -> list[bool]:
    """lab-1: ``performer.where(reference.startsWith('Organization/') or type = 'Organization').exists()``"""
    performers = value.get("performer") if isinstance(value, dict) else None
    return [any(isinstance(p, dict) and (str(p.get("reference", "")).startswith("Organization/")
                                         or p.get("type") == "Organization")
                for p in performers or ())]


def _lab_quantity_is_ucum(value: object) -> list[bool]:
    """lab-2: ``value.ofType(Quantity).all(system = 'http://unitsofmeasure.org' and code.exists())``"""
    quantity = value.get("valueQuantity") if isinstance(value, dict) else None
    if not isinstance(quantity, dict):
        return [True]  # all() of nothing
    return [quantity.get("system") == UCUM and _present(quantity, "code")]


NATIVE: dict[str, Callable[[object], list]] = {
    RESIDENT_ID_EXPRESSION: _resident_id_check,
    "performer.where(reference.startsWith('Organization/') or type = 'Organization').exists()":
        _lab_performer_is_organization,
    f"value.ofType(Quantity).all(system = '{UCUM}' and code.exists())": _lab_quantity_is_ucum,
}

# ``a.exists() or b.exists() ...``: at least one of the children is there.
_EXISTS_OR = re.compile(r"[a-z][A-Za-z0-9]*\.exists\(\)(?: or [a-z][A-Za-z0-9]*\.exists\(\))*")


def _exists_or_form(expression: str) -> Callable[[object], list] | None:
    if _EXISTS_OR.fullmatch(expression) is None:
        return None
    children = [part.removesuffix(".exists()") for part in expression.split(" or ")]
    return lambda value: [any(_present(value, child) for child in children)]


# ``system = 'S' and (code = 'A' or code = 'B' ...)`` on a Quantity: the unit rules of the lab
# profiles, in FHIRPath's three-valued logic (a missing system or code is empty, not false).
_UNIT_IN = re.compile(r"system = '([^']*)' and \(((?:code = '[^']*'(?: or )?)+)\)")


def _unit_form(expression: str) -> Callable[[object], list] | None:
    form = _UNIT_IN.fullmatch(expression)
    if form is None:
        return None
    system, codes = form.group(1), re.findall(r"code = '([^']*)'", form.group(2))

    def evaluate(value: object) -> list:
        quantity = value if isinstance(value, dict) else {}
        has_system, code = isinstance(quantity.get("system"), str), quantity.get("code")
        system_ok = quantity["system"] == system if has_system else None
        code_ok = code in codes if isinstance(code, str) else None
        if system_ok is False or code_ok is False:
            return [False]
        return [True] if system_ok and code_ok else []

    return evaluate

# ``matches('re')`` on the element itself, or ``name.matches('re')`` on one of its children:
# the form of every shape rule in the profiles, evaluated with Python's re (FHIRPath R4
# ``matches`` is a search; the profiles anchor their expressions).
_MATCHES = re.compile(r"(?:([a-z][A-Za-z0-9]*)\.)?matches\('((?:[^'\\]|\\.)*)'\)")


def _matches_form(expression: str) -> Callable[[object], list] | None:
    form = _MATCHES.fullmatch(expression)
    if form is None:
        return None
    child, regex = form.group(1), re.compile(form.group(2).replace("\\'", "'"))

    def evaluate(value: object) -> list:
        if child is not None:
            value = value.get(child) if isinstance(value, dict) else None
        return [bool(regex.search(value))] if isinstance(value, str) else []

    return evaluate


@dataclass(frozen=True)
class Invariant:
    key: str
    severity: str
    human: str
    expression: str
    evaluate: Callable[[object], list]

    def holds(self, value: object) -> bool:
        """True unless the expression yields false (an empty result is no violation).

        An expression that cannot be evaluated on the value (fhirpathpy raises a plain
        ``Exception`` on a type mismatch, e.g. comparing a string with a number) fails.
        """
        try:
            result = self.evaluate(value)
        except Exception:  # noqa: BLE001 - fhirpathpy signals evaluation errors with Exception
            return False
        return all(item is not False for item in result)


# ``$this >= 0``: a bound on a number (other values, e.g. a Quantity, go to fhirpathpy).
_BOUND = re.compile(r"\$this (>=|>|<=|<) (-?[0-9]+(?:\.[0-9]+)?)")
_COMPARE = {">=": float.__ge__, ">": float.__gt__, "<=": float.__le__, "<": float.__lt__}


def _bound_form(expression: str) -> Callable[[object], list] | None:
    form = _BOUND.fullmatch(expression)
    if form is None:
        return None
    compare, bound, other = _COMPARE[form.group(1)], float(form.group(2)), _fhirpathpy_form(expression)

    def evaluate(value: object) -> list:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return [compare(float(value), bound)]
        return other(value)

    return evaluate


def _fhirpathpy_form(expression: str) -> Callable[[object], list]:
    """Any other expression, through fhirpathpy."""
    compiled = fhirpathpy.compile(expression, model=_R4)

    def evaluate(value: object) -> list:
        return compiled(value)

    return evaluate


def compile_invariant(constraint: dict) -> Invariant:
    expression = constraint["expression"]
    evaluate = (NATIVE.get(expression) or _matches_form(expression) or _exists_or_form(expression)
                or _unit_form(expression) or _bound_form(expression) or _fhirpathpy_form(expression))
    return Invariant(constraint["key"], constraint.get("severity", "error"), constraint.get("human", ""),
                     expression, evaluate)
