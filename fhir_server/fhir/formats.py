"""FHIR on the wire: which format a request body is in, which one the client wants back.

JSON is the default. XML is chosen by ``_format`` (xml, text/xml, application/fhir+xml, ...) or
by the Accept header, and read when the Content-Type says XML.
"""

from __future__ import annotations

import orjson

from fhir_server.errors import InvalidRequest, UnsupportedMediaType
from fhir_server.fhir.xml import json_to_xml, xml_to_json

JSON = "application/fhir+json"
XML = "application/fhir+xml"
_JSON_NAMES = {"json", "application/json", "application/fhir+json", "application/json+fhir"}
_XML_NAMES = {"xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir"}
PATCH_JSON = "application/json-patch+json"


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def response_format(format_param: str | None, accept: str | None) -> str:
    """The media type to answer in."""
    if format_param:
        name = _media_type(format_param)
        if name in _XML_NAMES:
            return XML
        if name in _JSON_NAMES:
            return JSON
        raise UnsupportedMediaType(f"_format {format_param!r} is not supported; use json or xml")
    for part in (accept or "").split(","):
        name = _media_type(part)
        if name in _JSON_NAMES or name in ("*/*", "application/*", ""):
            return JSON
        if name in _XML_NAMES:
            return XML
    return JSON


def parse_body(body: bytes, content_type: str | None) -> object:
    """The request body as FHIR JSON (XML bodies are converted)."""
    if not body.strip():
        raise InvalidRequest("The request body is empty")
    media = _media_type(content_type or JSON)
    if media in _XML_NAMES:
        try:
            return xml_to_json(body)
        except ValueError as exc:
            raise InvalidRequest(f"The XML body is not valid FHIR XML: {exc}") from None
    if media in _JSON_NAMES or media == PATCH_JSON or media in ("", "text/plain"):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"The body is not valid JSON: {exc}") from None
    raise UnsupportedMediaType(f"Content-Type {content_type!r} is not supported; send FHIR JSON or XML")


def render(resource: dict, media_type: str, pretty: bool = False) -> bytes:
    if media_type == XML:
        return json_to_xml(resource, pretty=pretty)
    return orjson.dumps(resource, option=orjson.OPT_INDENT_2 if pretty else 0)
