"""The column map: which header of a file holds which field of the form, and how to read it.

The default map is ``mappings/public_health/columns.csv`` (field, form, type, codes, headers):
every header the national forms use, in Chinese and in English. A field ``medication_{n}_name``
with headers ``药物名称{n}`` stands for the repeated medication lines (n = 1..9).

A site whose export uses other names adds a column-map file (``--column-map``) of the same
shape, or simply two columns ``header,field``; its headers win over the default ones.
Headers are compared after normalisation: case, spaces, full-width brackets and a trailing
unit in brackets do not matter ("体重（kg）" is "体重").
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from adapters.public_health.follow_up_record import KINDS
from adapters.public_health.form_codes import MAPPINGS_DIR

__all__ = ["Column", "ColumnMap", "column_map", "normalise_header", "MAX_MEDICATIONS"]

MAX_MEDICATIONS = 9
TYPES = ("text", "date", "int", "float", "code", "codes", "bp")
_UNIT_SUFFIX = re.compile(r"\((?:kg|kg/m2|kg/m²|支|两|次/周|分钟/次|克/天|mmol/l|%|mmhg|次/分|次/分钟)\)$")


@dataclass(frozen=True)
class Column:
    field: str  # a FollowUpRecord field, or medication_<n>_name / _usage, or blood_pressure
    type: str
    codes: str | None  # the code table of a code/codes field
    headers: tuple[str, ...]  # as written in the map; the first is the one exports use


def normalise_header(header: object) -> str:
    text = unicodedata.normalize("NFKC", str(header or "")).strip().lower()
    text = re.sub(r"\s+", " ", text)
    stripped = _UNIT_SUFFIX.sub("", text).strip()
    return stripped or text


class ColumnMap:
    """Headers -> columns for one form (``kind``)."""

    def __init__(self, kind: str, columns: list[Column]):
        self.kind = kind
        self.columns = columns
        self._by_header: dict[str, Column] = {}
        for column in columns:
            for header in column.headers:
                self._by_header.setdefault(normalise_header(header), column)
        self._seen: dict[object, Column | None] = {}  # a file's headers as written -> column

    def column(self, header: object) -> Column | None:
        if header not in self._seen:  # every row of a file repeats its headers
            self._seen[header] = self._by_header.get(normalise_header(header))
        return self._seen[header]

    def by_field(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.field == name), None)

    def with_overrides(self, overrides: list[tuple[str, str]]) -> ColumnMap:
        """A map where each (header, field) of ``overrides`` reads that header as that field."""
        by_field = {c.field: c for c in self.columns}
        added = []
        for header, name in overrides:
            base = by_field.get(name)
            if base is None:
                raise ValueError(f"The column map names an unknown field {name!r}")
            added.append(Column(base.field, base.type, base.codes, (header,)))
        result = ColumnMap(self.kind, self.columns)
        for column in added:
            result._by_header[normalise_header(column.headers[0])] = column
        return result


def _expand(row: dict) -> list[Column]:
    name, headers = row["field"], tuple(h for h in row["headers"].split("|") if h)
    kind = row["type"]
    if kind not in TYPES:
        raise ValueError(f"columns.csv: unknown type {kind!r} for {name}")
    if "{n}" not in name:
        return [Column(name, kind, row["codes"] or None, headers)]
    return [Column(name.replace("{n}", str(n)), kind, row["codes"] or None,
                   tuple(h.replace("{n}", str(n)) for h in headers))
            for n in range(1, MAX_MEDICATIONS + 1)]


@cache
def _default_rows(path: Path) -> tuple[dict, ...]:
    with open(path, encoding="utf-8", newline="") as handle:
        return tuple(csv.DictReader(handle))


def column_map(kind: str, extra: Path | None = None,
               path: Path = MAPPINGS_DIR / "columns.csv") -> ColumnMap:
    """The default map for ``kind``, with the headers of ``extra`` (a column-map file) on top."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    columns: list[Column] = []
    for row in _default_rows(path):
        if row["form"] in ("both", kind):
            columns += _expand(row)
    columns.append(Column("blood_pressure", "bp", None, ("血压", "blood pressure", "bp")))
    result = ColumnMap(kind, columns)
    if extra is None:
        return result
    with open(extra, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "headers" in rows[0]:  # the full shape: every header of each field
        overrides = [(h, r["field"]) for r in rows if r.get("form", "both") in ("both", kind, "")
                     for h in r["headers"].split("|") if h]
    else:
        overrides = [(r["header"], r["field"]) for r in rows if r.get("header") and r.get("field")]
    return result.with_overrides(overrides)
