"""The HL7 v2 mapping tables under ``mappings/hl7v2/``, read once (see its README.md).

- ``messages.csv``: which message types are accepted and which handler maps them;
- ``senders.csv``: per-sender settings (tolerance rules, institution code...), keyed by
  MSH-3 / MSH-4 with ``*`` for any; the most specific row wins;
- ``vocabulary/*.csv``: code maps; a ``sender`` column, where present, lets one sender's
  rows override the ``*`` rows;
- ``segments/*.csv``: segment maps in the v2-to-FHIR IG's shape, applied by ``segment_map.py``.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from fhir_server.settings import PROJECT_ROOT

__all__ = ["MappingTables", "tables", "MAPPINGS_DIR"]

MAPPINGS_DIR = PROJECT_ROOT / "mappings" / "hl7v2"
ANY = "*"


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in csv.DictReader(handle)]


class MappingTables:
    def __init__(self, directory: Path = MAPPINGS_DIR):
        self.directory = directory
        self.messages = {(r["message_code"], r["trigger_event"]): r for r in _read(directory / "messages.csv")}
        self._senders: dict[tuple[str, str, str], str] = {}
        for row in _read(directory / "senders.csv"):
            self._senders[(row["sending_application"], row["sending_facility"], row["setting"])] = row["value"]
        self._vocabularies: dict[str, dict[tuple[str, str], dict[str, str]]] = {}
        for path in sorted((directory / "vocabulary").glob("*.csv")):
            rows = _read(path)
            key_column = next(k for k in rows[0] if k not in ("sender", "comment")) if rows else "code"
            table: dict[tuple[str, str], dict[str, str]] = {}
            for row in rows:
                key = row[key_column] if path.stem != "character-sets" else _charset_key(row[key_column])
                table[(row.get("sender") or ANY, key)] = row
            self._vocabularies[path.stem] = table
        self.segment_maps = {path.stem: _read(path) for path in sorted((directory / "segments").glob("*.csv"))}
        self.date_formats = self._ordered("date-formats", "pattern")

    # ---- messages ---------------------------------------------------------------------------
    def handler(self, message_code: str, trigger_event: str) -> str | None:
        row = self.messages.get((message_code, trigger_event))
        return row["handler"] if row else None

    def knows_message_code(self, message_code: str) -> bool:
        return any(code == message_code for code, _ in self.messages)

    # ---- senders ----------------------------------------------------------------------------
    def setting(self, application: str, facility: str, name: str) -> str:
        for key in ((application, facility), (ANY, facility), (application, ANY), (ANY, ANY)):
            value = self._senders.get((*key, name))
            if value is not None:
                return value
        return ""

    def flag(self, application: str, facility: str, name: str) -> bool:
        return self.setting(application, facility, name).lower() in ("yes", "true", "1", "on")

    # ---- vocabulary -------------------------------------------------------------------------
    def lookup(self, vocabulary: str, code: str, sender: str = ANY) -> dict[str, str] | None:
        """The row of ``vocabulary`` for ``code``: the sender's own row, else the ``*`` row."""
        table = self._vocabularies[vocabulary]
        return table.get((sender, code)) or table.get((ANY, code))

    def charset_codec(self, declared: str) -> str | None:
        row = self._vocabularies["character-sets"].get((ANY, _charset_key(declared)))
        return row["codec"] if row else None

    def vocabulary_names(self) -> list[str]:
        return sorted(self._vocabularies)

    def _ordered(self, vocabulary: str, column: str) -> dict[str, list[str]]:
        by_sender: dict[str, list[str]] = {}
        for (sender, _), row in self._vocabularies[vocabulary].items():
            by_sender.setdefault(sender, []).append(row[column])
        return by_sender

    def date_patterns(self, sender: str) -> list[str]:
        return self.date_formats.get(sender, []) + self.date_formats.get(ANY, [])


def _charset_key(name: str) -> str:
    return " ".join(name.upper().replace("_", " ").split())


@cache
def tables() -> MappingTables:
    return MappingTables()
