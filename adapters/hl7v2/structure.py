"""A message checked against its version's structure by hl7apy: for diagnosing a sender.

``structure_problems(raw)`` parses with hl7apy (groups found, as the standard defines the
message structure), runs its validation and returns what it reports as ``Problem``\\s
(warnings for values not in an HL7 table, errors for structure). It costs tens of
milliseconds a message, so it is not on the ingest path (``translate`` uses the fast parser);
use it from a test, the shell or a replay investigation::

    from adapters.hl7v2.structure import structure_problems
    for problem in structure_problems(raw): print(problem)
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from adapters.hl7v2.contract import Problem
from adapters.hl7v2.decoding import decode

__all__ = ["structure_problems"]

_ELEMENT = re.compile(r"element (?P<segment>[A-Z][A-Z0-9]{2})[._](?:[A-Z][A-Z0-9]{2}_)?(?P<field>\d+)?"
                      r"(?:\.[A-Z]+_(?P<component>\d+))?")
_NOT_IN_TABLE = "not in table"


def structure_problems(raw: bytes) -> list[Problem]:
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    decoded = decode(raw)
    try:
        message = parse_message("\r".join(decoded.lines), validation_level=VALIDATION_LEVEL.TOLERANT,
                                find_groups=True)
    except Exception as exc:  # noqa: BLE001 - hl7apy raises many kinds: each is a structure error
        return [_problem(f"{type(exc).__name__}: {exc}", "E")]
    with tempfile.TemporaryDirectory() as directory:
        report = Path(directory) / "report.txt"
        try:
            message.validate(report_file=str(report))
        except Exception as exc:  # noqa: BLE001 - validation errors are raised after the report is written
            problems = [_problem(f"{type(exc).__name__}: {exc}", "E")]
        else:
            problems = []
        lines = report.read_text(encoding="utf-8").splitlines() if report.exists() else []
    for line in lines:
        kind, _, text = line.partition(": ")
        if text:
            problems.append(_problem(text, "W" if kind == "Warning" else "E"))
    return problems


def _problem(text: str, severity: str) -> Problem:
    m = _ELEMENT.search(text)
    segment = m.group("segment") if m else "MSH"
    field = int(m.group("field")) if m and m.group("field") else None
    component = int(m.group("component")) if m and m.group("component") else None
    code = "103" if _NOT_IN_TABLE in text else "102" if field else "100"
    return Problem(segment, 1, field, component, code, severity, text)  # type: ignore[arg-type]
