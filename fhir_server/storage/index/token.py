"""Token index: codes, codings, identifiers, contact points and booleans as (system, code)."""

from __future__ import annotations

from sqlalchemy import and_

from fhir_server.errors import InvalidRequest
from fhir_server.search.parse import split_escaped, unescape
from fhir_server.storage.index.text import clip, normalise

KIND = "token"


def _row(system, code, text=None, type_coding: dict | None = None) -> dict:
    row = {
        "system": clip(system) if system else None,
        "code": clip(str(code)) if code is not None else None,
        "text": normalise(text) if text else None,
        "type_system": None,
        "type_code": None,
    }
    if type_coding:
        row["type_system"], row["type_code"] = _clip(type_coding.get("system")), _clip(type_coding.get("code"), 64)
    return row


def _clip(value, limit: int = 256) -> str | None:
    return clip(value, limit) if isinstance(value, str) else None


_CONCEPT_ONLY = frozenset({"text", "id", "extension"})  # a CodeableConcept without codings


def extract(node) -> list[dict]:
    if isinstance(node, dict):  # the common case first
        if "coding" in node or node.keys() <= _CONCEPT_ONLY:  # CodeableConcept
            text = node.get("text")
            rows = []
            for c in node.get("coding", []):
                if isinstance(c, dict):
                    system, code = c.get("system"), c.get("code")
                    if code or system:
                        rows.append(_row(system, code, c.get("display") or text))
            if not rows and text:
                rows.append(_row(None, None, text))
            return rows
        if "value" in node:  # Identifier (its type is kept for :of-type) or ContactPoint
            identifier_type = node.get("type") if isinstance(node.get("type"), dict) else {}
            first_coding = (identifier_type.get("coding") or [None])[0]
            return [_row(node.get("system"), node["value"], identifier_type.get("text"), first_coding)]
        if node.get("code") or node.get("system"):  # Coding
            return [_row(node.get("system"), node.get("code"), node.get("display"))]
        return []
    if isinstance(node, bool):
        return [_row(None, "true" if node else "false")]
    if isinstance(node, (str, int)):
        return [_row(None, node)]
    return []


def condition(t, value, modifier):
    """``[system]|[code]``, ``code``, ``system|``, ``|code``; :text, :not (by the caller), :of-type."""
    if modifier == "text":
        return t.c.text.contains(normalise(unescape(value.raw)), autoescape=True)
    if modifier == "of-type":
        parts = [unescape(p) for p in split_escaped(value.raw, "|")]
        if len(parts) != 3 or not parts[2]:
            raise InvalidRequest(f":of-type needs type-system|type-code|value, not {value.raw!r}")
        return and_(t.c.type_system == clip(parts[0]), t.c.type_code == clip(parts[1], 64),
                    t.c.code == clip(parts[2]))
    if modifier in ("above", "below"):
        raise InvalidRequest(
            f":{modifier} on tokens needs code-system subsumption, which this server does not support"
        )
    parts = [unescape(p) for p in split_escaped(value.raw, "|")]
    parts = [clip(p) for p in parts]  # stored values are clipped to the column width too
    if len(parts) == 1:
        return t.c.code == parts[0]
    if len(parts) != 2:
        raise InvalidRequest(f"Token value {value.raw!r} has more than one unescaped '|'")
    system, code = parts
    if not code:
        return t.c.system == system
    if not system:
        return and_(t.c.code == code, t.c.system.is_(None))
    return and_(t.c.code == code, t.c.system == system)
