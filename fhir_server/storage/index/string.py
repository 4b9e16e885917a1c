"""String index: names, addresses and free text, matched case- and accent-insensitively."""

from __future__ import annotations

from sqlalchemy import and_

from fhir_server.search.parse import unescape
from fhir_server.storage.index.text import clip, normalise

KIND = "string"

# Complex types whose string parts are searchable, in FHIR's order of parts.
_PARTS = {
    "name": ("text", "family", "given", "prefix", "suffix"),
    "address": ("text", "line", "city", "district", "state", "postalCode", "country"),
}


def extract(node) -> list[dict]:
    if isinstance(node, str):  # family, given, city...: one value
        return [{"value": normalise(node), "exact": clip(node)}] if node else []
    values: list[str] = []
    if isinstance(node, dict):
        if "family" in node or "given" in node or ("text" in node and "line" not in node and "city" not in node):
            parts = _PARTS["name"]
        else:
            parts = _PARTS["address"]
        for part in parts:
            value = node.get(part)
            if isinstance(value, str):
                values.append(value)
            elif isinstance(value, list):
                values.extend(v for v in value if isinstance(v, str))
        # The whole name as one string too, so that "张三" matches family 张 + given 三.
        if "family" in node and node.get("given"):
            given = "".join(g for g in node["given"] if isinstance(g, str))
            values.append(f"{node['family']}{given}")
            values.append(" ".join([*[g for g in node["given"] if isinstance(g, str)], node["family"]]))
    seen = set()
    rows = []
    for v in values:
        if v and v not in seen:
            seen.add(v)
            rows.append({"value": normalise(v), "exact": clip(v)})
    return rows


def condition(t, value, modifier):
    text = unescape(value.raw)
    if modifier == "exact":
        return t.c.exact == clip(text)
    needle = normalise(text)
    if modifier == "contains":
        return t.c.value.contains(needle, autoescape=True)
    return starts_with(t.c.value, needle)


def starts_with(column, prefix: str):
    """``column`` starts with ``prefix``, as a range so that both engines use the index."""
    if not prefix:
        return column.is_not(None)
    return and_(column >= prefix, column < prefix + "\U0010ffff")
