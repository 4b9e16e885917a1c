"""The transaction Bundle one message becomes: entries with ``urn:uuid`` fullUrls, deduplicated."""

from __future__ import annotations

import uuid

__all__ = ["TransactionBuilder"]


class TransactionBuilder:
    def __init__(self) -> None:
        self._entries: list[dict] = []
        self._by_key: dict[str, str] = {}

    def add(self, resource: dict, method: str, url: str, *, if_none_exist: str | None = None,
            if_match: str | None = None, key: str | None = None) -> str:
        """Add one entry and return its fullUrl; an entry with the same ``key`` is added once."""
        key = key or (f"{method} {url} {if_none_exist}" if "?" in url or if_none_exist else None)
        if key and key in self._by_key:
            return self._by_key[key]
        full_url = f"urn:uuid:{uuid.uuid4()}"
        request = {"method": method, "url": url}
        if if_none_exist:
            request["ifNoneExist"] = if_none_exist
        if if_match:
            request["ifMatch"] = if_match
        self._entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        if key:
            self._by_key[key] = full_url
        return full_url

    def resource(self, full_url: str) -> dict:
        return next(e["resource"] for e in self._entries if e["fullUrl"] == full_url)

    def replace(self, full_url: str, resource: dict) -> None:
        next(e for e in self._entries if e["fullUrl"] == full_url)["resource"] = resource

    @property
    def entries(self) -> list[dict]:
        return self._entries

    def bundle(self) -> dict:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self._entries}


def identifier_criteria(identifier: dict) -> str:
    """``identifier=system|value`` for a conditional interaction, each part URL-encoded."""
    from urllib.parse import quote

    return f"identifier={quote(identifier['system'], safe=':/')}|{quote(identifier['value'], safe='')}"


__all__ += ["identifier_criteria"]
