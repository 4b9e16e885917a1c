"""URI index: canonical URLs, profiles, system URIs."""

from __future__ import annotations

from sqlalchemy import and_, func, literal

from fhir_server.search.parse import unescape

KIND = "uri"


def extract(node) -> list[dict]:
    if isinstance(node, str) and node:
        return [{"uri": node[:512]}]
    return []


def condition(t, value, modifier):
    text = unescape(value.raw)
    if modifier == "below":
        text = text[:512]  # as indexed
        return and_(t.c.uri >= text, t.c.uri < text + "\U0010ffff")
    if modifier == "above":  # the indexed URI is a prefix of the search value (no LIKE: '_' is data)
        return func.substr(literal(text), 1, func.length(t.c.uri)) == t.c.uri
    return t.c.uri == text[:512]
