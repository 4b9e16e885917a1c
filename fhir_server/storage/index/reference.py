"""Reference index: local references as (type, id); absolute and canonical ones as a URL.

A reference is local when it is ``Type/id`` (optionally ``/_history/n``) or an absolute URL
under this server's base; anything else is kept whole in ``url``.
"""

from __future__ import annotations

import re
from functools import lru_cache

from sqlalchemy import and_, or_

from fhir_server.search.parse import unescape
from fhir_server.storage.index.text import clip

KIND = "reference"

_LOCAL = re.compile(r"^(?:(?P<base>.*)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_BARE_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@lru_cache(maxsize=16384)  # a bundle's resources point at the same few patients and encounters
def parse_reference(reference: str) -> tuple[str | None, str | None, str | None]:
    """(type, id, url) of a reference string; url is set when the reference is not relative."""
    match = _LOCAL.match(reference)
    if match and not reference.startswith(("urn:", "#")):
        url = reference if match.group("base") else None
        return match.group("type"), match.group("id"), url
    return None, None, reference


def _row(target_type=None, target_id=None, url=None, identifier=None) -> dict:
    if isinstance(identifier, dict):
        system, value = _clip(identifier.get("system")), _clip(identifier.get("value"))
    else:  # most references have no identifier
        system = value = None
    return {
        "target_type": _clip(target_type, 64),
        "target_id": target_id,
        "url": url[:512] if url else None,
        "identifier_system": system,
        "identifier_value": value,
    }


def _clip(value, limit: int = 256) -> str | None:
    """Cut to the column width (PostgreSQL refuses longer values); non-strings are not indexed."""
    return clip(value, limit) if isinstance(value, str) else None


def extract(node) -> list[dict]:
    if isinstance(node, str):  # canonical
        return [_row(url=node)] if node else []
    if not isinstance(node, dict):
        return []
    reference = node.get("reference")
    if isinstance(reference, str) and reference and not reference.startswith("#"):
        return [_row(*parse_reference(reference), identifier=node.get("identifier"))]
    if isinstance(node.get("identifier"), dict):  # a logical reference, found with :identifier
        return [_row(target_type=node.get("type"), identifier=node["identifier"])]
    return []


def condition(t, value, modifier, base_url: str = ""):
    """``Type/id``, ``id``, an absolute URL, a canonical URL, or with :identifier ``system|value``."""
    raw = unescape(value.raw)
    if modifier == "identifier":
        system, sep, ident = raw.rpartition("|")
        if not sep:
            return t.c.identifier_value == clip(raw)
        return and_(t.c.identifier_value == clip(ident), t.c.identifier_system == (clip(system) or None))
    rtype, rid, url = parse_reference(raw)
    if url and base_url and raw.startswith(base_url.rstrip("/") + "/"):
        url = None  # a full URL on this server is a local reference
    if rid is None and (url is None or _BARE_ID.fullmatch(raw)):
        rid, url = raw, None  # a bare id: patient=123 or subject:Patient=123
    if url is not None:
        # "IS NOT NULL" lets the planner use the partial (sp, url) index through the OR
        return and_(t.c.url.isnot(None), or_(t.c.url == url[:512], t.c.url.startswith(url + "|", autoescape=True)))
    condition = t.c.target_id == rid
    # subject=Patient/1 and subject:Patient=1 both name the type; subject:Patient=Group/1 matches nothing
    for wanted_type in {rtype, modifier if modifier and modifier[0].isupper() else None} - {None}:
        condition = and_(condition, t.c.target_type == wanted_type)
    return condition
