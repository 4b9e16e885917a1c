"""HL7 v2 files: one message, many messages, or FHS/BHS batches, split into messages.

- Segments may end with ``\\r``, ``\\n`` or ``\\r\\n`` (files edited on Windows or Unix); each
  message handed on has its segments joined by ``\\r``, as on the wire.
- Every ``MSH`` line starts a message; ``FHS``, ``BHS``, ``BTS`` and ``FTS`` (the file and batch
  envelope) are dropped; empty lines and MLLP framing bytes left in the file are ignored.
- Lines before the first ``MSH`` that are not envelope segments are reported (``stray_lines``).
- Splitting works on bytes and needs no decoding: ``\\r``, ``\\n`` and an ``MSH`` at the start of
  a line are ASCII in UTF-8 and in GB 18030 alike (no multi-byte character contains them
  where a line starts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["BatchFile", "split_messages"]

_LINE_END = re.compile(rb"\r\n|\r|\n")
_ENVELOPE = (b"FHS", b"BHS", b"BTS", b"FTS")
_FRAMING = b"\x0b\x1c\x00"
_BOM = b"\xef\xbb\xbf"


@dataclass
class BatchFile:
    messages: list[bytes] = field(default_factory=list)
    stray_lines: int = 0  # lines outside any message (not MSH-led, not envelope)
    declared_counts: list[int] = field(default_factory=list)  # BTS-1 of each batch, when given


def split_messages(data: bytes) -> BatchFile:
    result = BatchFile()
    current: list[bytes] | None = None
    for line in _LINE_END.split(data.removeprefix(_BOM)):
        line = line.strip(_FRAMING)
        if not line.strip():
            continue
        line = line.lstrip()
        head = line[:3]
        if head == b"MSH":
            if current:
                result.messages.append(b"\r".join(current) + b"\r")
            current = [line]
        elif head in _ENVELOPE:
            if current:
                result.messages.append(b"\r".join(current) + b"\r")
            current = None
            if head == b"BTS":
                count = line[4:].split(line[3:4] or b"|")[0] if len(line) > 4 else b""
                if count.strip().isdigit():
                    result.declared_counts.append(int(count))
        elif current is not None:
            current.append(line)
        else:
            result.stray_lines += 1
    if current:
        result.messages.append(b"\r".join(current) + b"\r")
    return result
