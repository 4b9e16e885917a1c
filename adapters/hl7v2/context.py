"""What mapping one message needs at hand: its header, the sender's settings, the problems found."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from adapters.hl7v2.contract import Header, Problem
from adapters.hl7v2.mapping_tables import MappingTables, tables
from adapters.hl7v2.parsing import Segment

__all__ = ["MappingContext", "SID_BASE"]

# Identifier systems this server mints for HL7 v2 senders' own numbers (order, visit, MRN...)
SID_BASE = "https://county-fhir.example.org/fhir/sid/hl7v2"


@dataclass
class MappingContext:
    header: Header
    server: object | None = None
    problems: list[Problem] = field(default_factory=list)
    tables: MappingTables = field(default_factory=tables)
    organization: dict | None = None  # reference to the sending institution's bundle entry
    header_time: str = ""  # MSH-7 as sent: the fallback for times a message leaves out

    @property
    def sender(self) -> str:
        return self.header.sender

    _settings: dict[str, str] = field(default_factory=dict, repr=False)

    def setting(self, name: str) -> str:
        if name not in self._settings:
            self._settings[name] = self.tables.setting(self.header.sending_application,
                                                       self.header.sending_facility, name)
        return self._settings[name]

    def flag(self, name: str) -> bool:
        return self.tables.flag(self.header.sending_application, self.header.sending_facility, name)

    def lookup(self, vocabulary: str, code: str) -> dict[str, str] | None:
        return self.tables.lookup(vocabulary, code, self.sender)

    def problem(self, segment: Segment | str, field_: int | None, code: str, severity: str, text: str,
                component: int | None = None, sequence: int | None = None) -> None:
        segment_id = segment.id if isinstance(segment, Segment) else segment
        seq = sequence if sequence is not None else (segment.sequence if isinstance(segment, Segment) else 1)
        self.problems.append(Problem(segment_id, seq, field_, component, code, severity, text))  # type: ignore[arg-type]

    def warn(self, segment: Segment | str, field_: int | None, code: str, text: str,
             component: int | None = None) -> None:
        self.problem(segment, field_, code, "W", text, component)

    def system_for(self, kind: str, namespace: str | None = None) -> str:
        """A stable identifier system for one kind of number a facility assigns.

        ``namespace`` is the assigning authority / namespace id when the message names one,
        else the sender's institution code (senders.csv), else the sending facility (MSH-4).
        """
        owner = (namespace or self.setting("institution_code") or self.header.sending_facility
                 or self.header.sending_application)
        return f"{SID_BASE}/{quote(owner, safe='')}/{kind}"
