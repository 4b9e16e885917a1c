"""Token index: codes, codings, identifiers, contact points and booleans as (system, code)."""

from __future__ import annotations

from sqlalchemy import and_

from fhir_server.errors import InvalidRequest
from fhir_server.search.parse import split_escaped, unescape
from fhir_server.storage.index.text import clip, normalise

KIND = "token"


def _row(system, code, text=None, type_coding: dict | None = None) -> dict:
    return {
        "system": clip(system) if system else None,
        "code": clip(str(code)) if code is not None else None,
        "text": normalise(text) if text else None,
        "type_system": _clip((type_coding or {}).get("system")),
        "type_code": _clip((type_coding or {}).get("code"), 64),
    }


def _clip(value, limit: int = 256) -> str | None:
    return clip(value, limit) if isinstance(value, str) else None


def extract(node) -> list[dict]:
    if isinstance(node, bool):
        return [_row(None, "true" if node else "false")]
    if isinstance(node, (str, int)):
        return [_row(None, node)]
    if not isinstance(node, dict):
        return []
    if "coding" in node or set(node) <= {"text", "id", "extension"}:  # CodeableConcept
        rows = [_row(c.get("system"), c.get("code"), c.get("display") or node.get("text"))
                for c in node.get("coding", []) if isinstance(c, dict) and (c.get("code") or c.get("system"))]
        if not rows and node.get("text"):
            rows.append(_row(None, None, node["text"]))
        return rows
    if "value" in node:  # Identifier (its type is kept for :of-type) or ContactPoint
        identifier_type = node.get("type") if isinstance(node.get("type"), dict) else {}
        first_coding = (identifier_type.get("coding") or [None])[0]
        return [_row(node.get("system"), node["value"], identifier_type.get("text"), first_coding)]
    if node.get("code") or node.get("system"):  # Coding
        return [_row(node.get("system"), node.get("code"), node.get("display"))]
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
