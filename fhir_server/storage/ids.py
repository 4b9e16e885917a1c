"""Server-assigned resource ids: time-ordered UUIDs (version 7, RFC 9562).

A random id (UUID version 4) lands on a random page of every index that holds it: the
``(res_type, res_id)`` key of the resource table, and the reference indexes of whatever points
at the resource (an Observation's subject, the AuditEvent naming it). In a large store each
such insert reads and dirties a page no other recent write touched. An id that starts with
the time in milliseconds lands beside the ids written just before it, so those inserts share
a few hot pages. The remaining 74 bits are random: ids stay unguessable and unique across
processes.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION = 0x7 << 76  # bits 79-76
_VARIANT = 0x2 << 62  # bits 63-62: RFC 9562
_CLEAR = ~((0xF << 76) | (0x3 << 62))


def new_resource_id() -> str:
    """A new UUID version 7 as a lower-case string: 48 bits of Unix time in milliseconds,
    then the version, 12 random bits, the variant and 62 random bits."""
    millis = time.time_ns() // 1_000_000
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    return str(uuid.UUID(int=(value & _CLEAR) | _VERSION | _VARIANT))
