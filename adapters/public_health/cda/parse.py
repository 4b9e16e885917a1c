"""Reading a CDA R2 document safely: hardened lxml, one namespace map, small value readers.

The document is parsed by the project's hardened parser (``fhir_server.fhir.xml``): lxml with
``resolve_entities=False``, ``no_network=True``, ``load_dtd=False``, ``huge_tree=False``. On
top of that parser's own checks (a DOCTYPE in any encoding, entity references, processing
instructions, a non-ASCII-compatible declared encoding are refused) this module:

* allows the one processing instruction CDA documents commonly carry before the root,
  ``<?xml-stylesheet ...?>`` (it is removed before parsing, never followed);
* refuses documents nested deeper than ``MAX_DEPTH`` elements;
* requires the root to be ``{urn:hl7-org:v3}ClinicalDocument``.

So a "billion laughs" (entity expansion), an external entity (``SYSTEM "file:///..."``) or any
DTD is refused before libxml2 could act on it, with ``CdaDocumentError`` (an
``InvalidRequest``: HTTP 400 with an OperationOutcome on the API; the CLI prints the message
with the file name).
"""

from __future__ import annotations

import re
from datetime import date, datetime

from lxml import etree

from fhir_server.errors import InvalidRequest
from fhir_server.fhir.xml import safe_parse  # the project's hardened parser (one place)

__all__ = ["CDA_NS", "MAX_DEPTH", "NS", "XSI_NS", "CdaDocumentError", "parse_document",
           "cda_date", "cda_datetime", "format_cda_date", "format_cda_datetime"]

CDA_NS = "urn:hl7-org:v3"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
NS = {"cda": CDA_NS, "xsi": XSI_NS}
MAX_DEPTH = 60
MAX_BYTES = 5 * 1024 * 1024  # a follow-up or referral document is a few kB

_STYLESHEET_PI = re.compile(rb"<\?xml-stylesheet\s[^?>]*\?>")


class CdaDocumentError(InvalidRequest):
    """A document that cannot be read as a CDA document of a known kind; says why."""


def parse_document(data: bytes | str, what: str = "CDA document") -> etree._Element:
    """The ``ClinicalDocument`` root element of ``data``, or ``CdaDocumentError``."""
    if isinstance(data, str):
        # an encoding declaration in an already decoded string is meaningless: drop it
        data = re.sub(r"\A\s*<\?xml[^>]*\?>", "", data, count=1).encode("utf-8")
    if len(data) > MAX_BYTES:
        raise CdaDocumentError(f"{what}: larger than {MAX_BYTES} bytes")
    data = _STYLESHEET_PI.sub(b"", data, count=2)
    try:
        root = safe_parse(data, what)
    except ValueError as exc:
        raise CdaDocumentError(str(exc)) from None
    if root.tag != f"{{{CDA_NS}}}ClinicalDocument":
        raise CdaDocumentError(f"{what}: the root element must be ClinicalDocument in the "
                               f"namespace {CDA_NS}, not {etree.QName(root).localname!r}")
    _check_depth(root, what)
    return root


def _check_depth(root: etree._Element, what: str) -> None:
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CdaDocumentError(f"{what}: nesting deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in element)


# --------------------------------------------------------------------------------------------
# HL7 v3 TS values (yyyyMMdd[HHmm[ss]][+zzzz]) <-> Python dates
# --------------------------------------------------------------------------------------------

_TS = re.compile(r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?(?:[.]\d+)?([+-]\d{4})?\Z")


def cda_date(value: str | None, what: str) -> date | None:
    """The date of a TS value (``20260512`` or longer), None for an empty one."""
    if value is None or not value.strip():
        return None
    match = _TS.match(value.strip())
    if not match:
        raise CdaDocumentError(f"{what}: {value!r} is not an HL7 date (yyyyMMdd)")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise CdaDocumentError(f"{what}: {value!r} is not a valid date") from None


def cda_datetime(value: str | None, what: str) -> str | None:
    """A FHIR dateTime for a TS value; a time without zone is China time (+08:00)."""
    if value is None or not value.strip():
        return None
    match = _TS.match(value.strip())
    if not match:
        raise CdaDocumentError(f"{what}: {value!r} is not an HL7 date/time (yyyyMMddHHmmss)")
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        date(int(year), int(month), int(day))
    except ValueError:
        raise CdaDocumentError(f"{what}: {value!r} is not a valid date") from None
    if hour is None:
        return f"{year}-{month}-{day}"
    offset = f"{zone[:3]}:{zone[3:]}" if zone else "+08:00"
    return f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}{offset}"


def format_cda_date(value: date | None) -> str | None:
    return value.strftime("%Y%m%d") if value else None


def format_cda_datetime(value: str | None) -> str | None:
    """A FHIR date or dateTime as a TS value (time zone kept, e.g. ``20260512100000+0800``)."""
    if not value:
        return None
    if len(value) == 10:
        return value.replace("-", "")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    text = moment.strftime("%Y%m%d%H%M%S")
    if moment.utcoffset() is not None:
        text += moment.strftime("%z")
    return text
