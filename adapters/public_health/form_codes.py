"""The coded answers of the national follow-up forms: code digits <-> Chinese words.

The tables are data: ``mappings/public_health/codes.csv`` (one row per answer: table, form,
code, word, aliases, English, FHIR code system). A cell may hold the code ("1"), the word
("门诊"), an alias ("家访"), or both ("1 门诊", "1.门诊", "1-门诊").
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from adapters.public_health.follow_up_record import RecordError
from fhir_server.demo.codes import LOCAL_BASE

__all__ = ["CodeTable", "code_tables", "MAPPINGS_DIR", "system_of"]

MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "mappings" / "public_health"
_CODE_AND_WORD = re.compile(r"^\s*([0-9]{1,2})\s*[.．、:：\-\s]?\s*(\S.*)?$")
# separators between several answers in one cell (symptoms)
SEPARATORS = re.compile(r"[,，、;；/|]+|\s+")


@dataclass
class CodeTable:
    name: str
    system: str  # the FHIR CodeSystem url of the codes
    words: dict[str, str] = field(default_factory=dict)  # code -> the form's word
    english: dict[str, str] = field(default_factory=dict)  # code -> English
    _lookup: dict[str, str] = field(default_factory=dict)  # code, word or alias -> code

    def add(self, code: str, word: str, aliases: list[str], english: str) -> None:
        self.words[code] = word
        self.english[code] = english
        for key in (code, word, *aliases, english):
            if key:
                self._lookup[key.strip().lower()] = code

    def code(self, value: object) -> str:
        """The code of a cell value (code, word, alias, or "code word"); RecordError if unknown."""
        text = str(value).strip()
        if text.endswith(".0") and text[:-2].isdigit():  # Excel numbers
            text = text[:-2]
        found = self._lookup.get(text.lower())
        if found is not None:
            return found
        match = _CODE_AND_WORD.match(text)
        if match and match[1] in self.words:
            word = (match[2] or "").strip()
            if not word or self._lookup.get(word.lower()) == match[1]:
                return match[1]
        choices = "; ".join(f"{c} {w}" for c, w in self.words.items())
        raise RecordError(f"{text!r} is not an answer of {self.name} ({choices})")

    def codes(self, value: object) -> tuple[list[str], list[str]]:
        """Several answers in one cell: (codes, parts that are no answer of this table)."""
        text = str(value).strip()
        try:
            return [self.code(text)], []
        except RecordError:
            pass
        found, unknown = [], []
        for part in SEPARATORS.split(text):
            if not part:
                continue
            try:
                code = self.code(part)
            except RecordError:
                unknown.append(part)
                continue
            if code not in found:
                found.append(code)
        return found, unknown

    def word(self, code: str | None) -> str | None:
        return None if code is None else self.words.get(code)


def system_of(name: str) -> str:
    return f"{LOCAL_BASE}/CodeSystem/{name}"


@cache
def code_tables(path: Path = MAPPINGS_DIR / "codes.csv") -> dict[str, CodeTable]:
    tables: dict[str, CodeTable] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            table = tables.setdefault(row["table"], CodeTable(row["table"], system_of(row["fhir_code_system"])))
            aliases = [a for a in (row["aliases"] or "").split("|") if a]
            table.add(row["code"], row["word"], aliases, row["english"])
    return tables
