"""From the bytes a sender wrote to the segment lines of one HL7 v2 message.

Steps, each tolerant of what real HIS/LIS traffic does:

1. Framing: MLLP start/end bytes (``0x0B``, ``0x1C``), a UTF-8 byte-order mark and blank
   bytes before ``MSH`` are dropped. No ``MSH`` at all: ``MessageUnreadable``.
2. Character set: MSH-18 is read from the raw bytes (its value is ASCII) and looked up in
   ``mappings/hl7v2/vocabulary/character-sets.csv`` (UTF-8 in any spelling, GB 18030, GBK,
   GB 2312...). Undeclared, unknown or wrong (the bytes do not decode): the sender's
   configured ``charset`` is tried, then UTF-8, then GB 18030 (which reads GBK and GB 2312).
   Bytes that are valid multi-byte UTF-8 are read as UTF-8 whatever MSH-18 says (GB 18030
   would read them too, as nonsense). The codec used and the declared name both go into the
   ``Header``.
3. Segments end with ``\\r``, ``\\n`` or ``\\r\\n``; empty lines are skipped. A line that does
   not start with a segment id (three upper-case letters or digits) and the field separator
   continues the previous segment: a raw line break inside a text field, kept as the escape
   sequence ``\\.br\\``.
4. Run-on segments (a sender that writes no terminator at all, ``...|2.4PID|1||...``):
   for a sender whose ``run_on_segments`` setting lists segment ids, a line is split before
   each of those ids followed by the field separator (``split_run_on_segments``).
5. Separators: MSH-1 is the byte after ``MSH``; MSH-2 gives the component, repetition, escape
   and sub-component characters. Missing or malformed encoding characters fall back to
   ``^~\\&`` (and are reported).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from adapters.hl7v2.contract import MessageUnreadable
from adapters.hl7v2.mapping_tables import tables

__all__ = ["DecodedMessage", "decode", "split_run_on_segments"]

DEFAULT_ENCODING_CHARACTERS = "^~\\&"
_FRAMING = b"\x0b\x1c\xef\xbb\xbf \t\r\n\x00"
_SEGMENT_START = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass
class DecodedMessage:
    """One message as text, split into segment lines, with its separators."""

    text: str
    lines: list[str]
    charset: str
    charset_declared: str | None
    field_separator: str
    encoding_characters: str
    notes: list[str] = field(default_factory=list)  # what was repaired, for warnings

    @property
    def component_separator(self) -> str:
        return self.encoding_characters[0]

    @property
    def repetition_separator(self) -> str:
        return self.encoding_characters[1]

    @property
    def escape_character(self) -> str:
        return self.encoding_characters[2]

    @property
    def subcomponent_separator(self) -> str:
        return self.encoding_characters[3]


def decode(raw: bytes, default_charset: str | None = None) -> DecodedMessage:
    """Decode ``raw`` (one message) into segment lines; ``MessageUnreadable`` if there is no MSH."""
    if isinstance(raw, str):  # a caller that already holds text
        raw = raw.encode("utf-8")
    start = raw.find(b"MSH")
    if start < 0:
        raise MessageUnreadable("No MSH segment: the message cannot be read")
    body = raw[start:].rstrip(_FRAMING)
    if len(body) < 8:
        raise MessageUnreadable("The MSH segment is too short to hold its separators")
    field_separator = chr(body[3])
    if field_separator.isalnum() or field_separator in "\r\n ":
        raise MessageUnreadable(f"MSH-1 (the field separator) is {field_separator!r}, not a separator")

    declared = _declared_charset(body, field_separator)
    text, codec, notes = _to_text(body, declared, default_charset)
    first_line = _LINE_BREAK.split(text, maxsplit=1)[0]
    encoding_characters, note = _encoding_characters(first_line, field_separator)
    if note:
        notes.append(note)
    escape = encoding_characters[2]
    lines = _segment_lines(text, field_separator, f"{escape}.br{escape}")
    return DecodedMessage(text, lines, codec, declared, field_separator, encoding_characters, notes)


def _declared_charset(body: bytes, field_separator: str) -> str | None:
    """MSH-18 as sent, read from the first line of the raw bytes (the value itself is ASCII)."""
    first_line = _LINE_BREAK.split(body[:4096].decode("latin-1"), maxsplit=1)[0]
    fields = first_line.split(field_separator)
    # fields[0] is "MSH", fields[1] MSH-2: MSH-n is fields[n - 1]
    if len(fields) >= 18:
        value = fields[17].split("~")[0].strip()
        if value and value.isascii():
            return value
    return None


def _to_text(body: bytes, declared: str | None, default_charset: str | None) -> tuple[str, str, list[str]]:
    notes: list[str] = []
    candidates: list[str] = []
    if declared:
        codec = tables().charset_codec(declared)
        if codec:
            candidates.append(codec)
        else:
            notes.append(f"MSH-18 names an unknown character set {declared!r}; the encoding was detected")
    if default_charset:
        candidates.append(default_charset)
    candidates += ["utf-8", "gb18030"]
    if candidates[0] != "utf-8" and not body.isascii() and _is_utf8(body):
        # GB 18030 reads almost any bytes: multi-byte UTF-8 read as GB would be silent mojibake
        notes.append(f"The message is UTF-8 although {'MSH-18 declares ' + repr(declared) if declared else 'the sender is configured for ' + candidates[0]}; read as UTF-8")
        return body.decode("utf-8"), "utf-8", notes
    for position, codec in enumerate(dict.fromkeys(candidates)):
        try:
            text = body.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        if declared and position > 0 and tables().charset_codec(declared):
            notes.append(f"MSH-18 declares {declared!r} but the message is not valid {tables().charset_codec(declared)};"
                         f" read as {codec}")
        return text, codec, notes
    # gb18030 fails only on truly broken bytes: keep what can be read
    notes.append("The message is in no known character set; undecodable bytes were replaced")
    return body.decode("utf-8", errors="replace"), "utf-8", notes


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _segment_lines(text: str, field_separator: str, line_break: str) -> list[str]:
    lines: list[str] = []
    for line in _LINE_BREAK.split(text):
        if not line.strip():
            continue
        head = line[:3]
        starts_segment = _SEGMENT_START.match(head) and (len(line) == 3 or line[3] == field_separator)
        if starts_segment or not lines:
            lines.append(line)
        else:  # a raw line break inside a field: the line continues the previous segment
            lines[-1] += line_break + line
    return lines


def _encoding_characters(msh: str, field_separator: str) -> tuple[str, str | None]:
    value = msh[4:].split(field_separator, 1)[0]
    chars = value[:4]
    if len(chars) >= 2 and len(set(chars)) == len(chars) and not any(c.isalnum() for c in chars):
        return chars + DEFAULT_ENCODING_CHARACTERS[len(chars):], None
    return DEFAULT_ENCODING_CHARACTERS, f"MSH-2 {value!r} does not give the encoding characters; ^~\\& assumed"


def split_run_on_segments(decoded: DecodedMessage, segment_ids: list[str]) -> int:
    """Split lines before each listed segment id + field separator; returns how many splits."""
    if not segment_ids:
        return 0
    fs = re.escape(decoded.field_separator)
    pattern = re.compile(f"(?<=.)(?=(?:{'|'.join(map(re.escape, segment_ids))}){fs})")
    lines: list[str] = []
    for line in decoded.lines:
        lines += pattern.split(line)
    splits = len(lines) - len(decoded.lines)
    decoded.lines = lines
    return splits
