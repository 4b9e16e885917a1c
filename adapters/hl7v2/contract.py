"""What the translation of one HL7 v2 message hands to the inbound pipeline.

``translate.translate(raw, server)`` reads a message and returns a ``Translation``; the
pipeline (``pipeline.py``) stores the raw message, writes the Bundle in one transaction with
its inbound record and a Provenance, and answers with an ACK built from the ``Header`` and
the ``Problem`` list. The two sides meet only here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AckCode = Literal["AA", "AE", "AR"]


class MessageUnreadable(ValueError):
    """No MSH segment could be read: there is nobody to address an ACK to."""


@dataclass(frozen=True)
class Header:
    """The MSH fields the pipeline needs, read even when the rest of the message is not."""

    sending_application: str  # MSH-3 (first component)
    sending_facility: str  # MSH-4 (first component)
    receiving_application: str  # MSH-5
    receiving_facility: str  # MSH-6
    message_type: str  # MSH-9 as "ORU^R01" (message code ^ trigger event)
    control_id: str  # MSH-10
    processing_id: str  # MSH-11
    version: str  # MSH-12, e.g. "2.4"
    charset: str  # the Python codec the message was decoded with, e.g. "utf-8", "gb18030"
    charset_declared: str | None  # MSH-18 as sent
    accept_ack_type: str | None  # MSH-15 (AL, NE, ER, SU); with MSH-16 set: enhanced mode
    application_ack_type: str | None  # MSH-16
    field_separator: str = "|"
    encoding_characters: str = "^~\\&"

    @property
    def sender(self) -> str:
        """One sending system: application and facility (MSH-3/MSH-4)."""
        return f"{self.sending_application}|{self.sending_facility}"


@dataclass(frozen=True)
class Problem:
    """Something wrong (or worth reporting) in a message; becomes one ERR segment."""

    segment: str  # segment id, e.g. "OBX"
    sequence: int  # which occurrence of that segment, 1-based
    field: int | None  # field position, None for the whole segment
    component: int | None
    code: str  # HL7 table 0357: 100 segment sequence, 101 required field missing,
    # 102 data type error, 103 table value not found, 200 unsupported message type,
    # 201 unsupported event code, 207 application internal error
    severity: Literal["E", "W", "I"]  # error, warning, information
    text: str  # in English, for the people who fix the sender or the mapping


@dataclass
class Translation:
    header: Header
    status: AckCode  # AA: write ``bundle``; AE: an error in the content; AR: refused (type...)
    bundle: dict | None = None  # a transaction Bundle (every entry has a urn:uuid fullUrl), AA only
    problems: list[Problem] = field(default_factory=list)  # errors, and warnings with AA
