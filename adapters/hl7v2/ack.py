"""Acknowledgements (ACK) for inbound HL7 v2 messages, written as ER7 text.

The ACK answers in the sender's version (MSH-12), processing id (MSH-11) and character set
(MSH-18 echoed; the bytes are encoded with the codec the message was read with), addressed
back to the sender (MSH-5/6 = the message's MSH-3/4), with MSA-2 = the message's MSH-10.

**One ERR per Problem.** From v2.5 on: ERR-2 location (ERL: segment ^ sequence ^ field ^
field repetition ^ component), ERR-3 the HL7 table 0357 code (``207^Application internal
error^HL70357``), ERR-4 severity (E / W / I), ERR-8 the user message. Before v2.5 (2.1 - 2.4)
the ACK has a single ERR whose ERR-1 repeats (ELD: segment ^ sequence ^ field ^
code&text&HL70357, one repetition per Problem), and MSA-3 carries the first error's text.

**Acknowledgement modes** (what ``acknowledgement`` decides):

- *Original mode* (MSH-15 and MSH-16 both empty): one application ACK, AA / AE / AR.
- *Enhanced mode* (MSH-15 or MSH-16 valued). The receiver has no channel back to the sender
  but the open connection, and it finishes its work (the FHIR writes) before answering, so it
  sends at most one ACK on that connection:
  * when MSH-16 asks for an application ACK for this outcome (AL always; ER when the outcome
    is AE/AR; SU when it is AA), that application ACK (AA / AE / AR with its ERRs);
  * otherwise, when MSH-15 asks for an accept (commit) ACK (AL or empty always; ER when the
    message could not be taken; SU when it was), a commit ACK: CA (stored, with its outcome
    recorded; its ERRs go along as information), CR (refused: unreadable or an unsupported
    type), CE (the message could not be stored);
  * otherwise (NE / NE, or a condition not met) no ACK at all.

hl7apy is not used to build ACKs: building the ER7 text directly costs about 20 µs, building
the same ACK as an hl7apy message tree about 10 ms on this (shared, 2-core) machine, a third of
a message's whole processing. The tests parse ACKs built here (v2.4 to 2.7, with ERR segments)
with hl7apy in strict mode to check their structure.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from adapters.hl7v2.contract import AckCode, Header, Problem

__all__ = ["ERROR_CODES", "Acknowledgement", "acknowledgement", "build_ack", "escape", "refusal_header"]

# HL7 table 0357, message error condition codes
ERROR_CODES = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
OUR_APPLICATION = "COUNTY_FHIR"
DEFAULT_VERSION = "2.5"
_COMMIT_CODES = {"AA": "CA", "AE": "CA", "AR": "CR"}


def escape(value: str) -> str:
    """ER7 escaping with the standard encoding characters (the ACK always uses ``|^~\\&``)."""
    if not any(c in value for c in "|^~\\&\r\n"):
        return value
    out = value.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    out = out.replace("~", "\\R\\").replace("&", "\\T\\")
    return out.replace("\r\n", "\\.br\\").replace("\r", "\\.br\\").replace("\n", "\\.br\\")


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) or (2, 5)


def _ack_message_type(header: Header) -> str:
    version = _version_tuple(header.version or DEFAULT_VERSION)
    trigger = header.message_type.partition("^")[2].partition("^")[0]
    if version >= (2, 4):
        return f"ACK^{trigger}^ACK" if trigger else "ACK^^ACK"
    if version >= (2, 3) and trigger:
        return f"ACK^{trigger}"
    return "ACK"


def _err_segments(problems: Sequence[Problem], version: tuple[int, ...]) -> list[str]:
    segments, old_style = [], []
    for p in problems:
        text = ERROR_CODES.get(p.code, "")
        code = f"{p.code}^{text}^HL70357" if text else f"{p.code}^^HL70357"
        location = [p.segment or "", str(p.sequence or 1) if p.segment else "",
                    str(p.field) if p.field is not None else ""]
        if version >= (2, 5):
            if p.component is not None:
                location += ["", str(p.component)]
            erl = "^".join(location).rstrip("^")
            segments.append(f"ERR||{erl}|{code}|{p.severity}||||{escape(p.text)}")
        else:
            eld_code = f"{p.code}&{text}&HL70357"
            old_style.append("^".join([*location, eld_code]))
    if old_style:  # before 2.5 the ACK has one ERR, whose ERR-1 repeats
        segments.append("ERR|" + "~".join(old_style))
    return segments


def build_ack(header: Header, code: str, problems: Sequence[Problem] = (), *,
              now: datetime | None = None, control_id: str | None = None) -> bytes:
    """An ACK (``code``: AA / AE / AR, or CA / CE / CR in enhanced mode) to ``header``'s message,
    encoded in the message's character set."""
    version_text = header.version or DEFAULT_VERSION
    version = _version_tuple(version_text)
    stamp = (now or datetime.now().astimezone()).strftime("%Y%m%d%H%M%S%z")
    msh = [
        "MSH", "^~\\&", escape(header.receiving_application) or OUR_APPLICATION,
        escape(header.receiving_facility), escape(header.sending_application),
        escape(header.sending_facility), stamp, "", _ack_message_type(header),
        control_id or uuid.uuid4().hex[:20], escape(header.processing_id) or "P", escape(version_text),
    ]
    enhanced = bool(header.accept_ack_type or header.application_ack_type)
    modes = ["NE", "NE"] if enhanced else ["", ""]  # in enhanced mode: an ACK is never acknowledged
    if header.charset_declared:
        msh += ["", "", *modes, "", escape(header.charset_declared)]
    elif enhanced:
        msh += ["", "", *modes]
    errors = [p for p in problems if p.severity == "E"]
    msa = ["MSA", code, escape(header.control_id)]
    if version < (2, 5) and errors:
        msa.append(escape(errors[0].text))
    segments = ["|".join(msh), "|".join(msa), *_err_segments(problems, version)]
    text = "\r".join(segments) + "\r"
    return _encode(text, header.charset)


def _encode(text: str, codec: str | None) -> bytes:
    try:
        return text.encode(codec or "utf-8", errors="replace")
    except LookupError:
        return text.encode("utf-8")


class Acknowledgement:
    """What to answer for one outcome: the MSA-1 code to send (None: send nothing)."""

    __slots__ = ("code",)

    def __init__(self, code: str | None):
        self.code = code


def acknowledgement(header: Header, outcome: AckCode, *, stored: bool = True) -> Acknowledgement:
    """Which ACK the mode of ``header`` asks for, after an outcome of ``outcome`` (see the module
    docstring). ``stored`` is False when the message could not even be kept."""
    accept = (header.accept_ack_type or "").strip().upper()
    application = (header.application_ack_type or "").strip().upper()
    if not accept and not application:
        return Acknowledgement(outcome)
    success = outcome == "AA"
    if _wanted(application, success):
        return Acknowledgement(outcome)
    committed = stored and outcome != "AR"
    if _wanted(accept or "AL", committed):
        if not stored:
            return Acknowledgement("CE")
        return Acknowledgement(_COMMIT_CODES[outcome])
    return Acknowledgement(None)


def _wanted(condition: str, success: bool) -> bool:
    return condition == "AL" or (condition == "ER" and not success) or (condition == "SU" and success)


def refusal_header(raw: bytes) -> Header:
    """A header to address a NAK with when no MSH could be read: the best that can be guessed
    from the bytes (the control id if an MSH-10 is visible), version 2.5, UTF-8."""
    control_id = ""
    sending = ("", "")
    start = raw.find(b"MSH")
    if start >= 0 and len(raw) > start + 4:
        separator = raw[start + 3:start + 4]
        line = raw[start:].split(b"\r")[0].split(b"\n")[0]
        fields = line.split(separator)
        def first_component(index: int, limit: int) -> str:
            if len(fields) <= index or len(raw) < start + 5:
                return ""
            value = fields[index].split(raw[start + 4:start + 5])[0]
            return value.decode("ascii", errors="ignore")[:limit]

        control_id = first_component(9, 200)
        sending = (first_component(2, 100), first_component(3, 100))
    return Header(
        sending_application=sending[0], sending_facility=sending[1], receiving_application="",
        receiving_facility="", message_type="", control_id=control_id, processing_id="P",
        version=DEFAULT_VERSION, charset="utf-8", charset_declared=None, accept_ack_type=None,
        application_ack_type=None,
    )
