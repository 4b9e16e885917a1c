"""FHIRPath invariants of the county profiles, compiled once.

Each invariant is compiled with fhirpathpy (the FHIRPath engine the server already uses for
search). A few expressions that run on every write are slow in an interpreter (the GB 11643
check digit is a 17-term weighted sum: ~0.7 ms per call in fhirpathpy), so ``NATIVE`` holds
Python functions for those exact expressions, and the shape rules (``matches('...')``) run
with Python's ``re``; tests/validation/test_invariants.py checks both against fhirpathpy on
valid and invalid values, so the FHIRPath text stays the definition.
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


NATIVE: dict[str, Callable[[object], list]] = {RESIDENT_ID_EXPRESSION: _resident_id_check}

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


def compile_invariant(constraint: dict) -> Invariant:
    expression = constraint["expression"]
    evaluate = NATIVE.get(expression) or _matches_form(expression)
    if evaluate is None:
        compiled = fhirpathpy.compile(expression, model=_R4)

        def evaluate(value: object, _compiled=compiled) -> list:
            return _compiled(value)

    return Invariant(constraint["key"], constraint.get("severity", "error"), constraint.get("human", ""),
                     expression, evaluate)
