"""History at instance, type and system level, as history Bundles (newest first).

Only versions of resources inside the caller's access scope are listed and counted (the scope
is part of the SQL); an instance outside it is unknown (404).
"""

from __future__ import annotations

from urllib.parse import urlencode

from fhir_server.auth.access import AccessPolicy, require_read
from fhir_server.auth.identity import Identity
from fhir_server.errors import InvalidRequest, NotFound
from fhir_server.services.resources import instant
from fhir_server.storage.engine import Database
from fhir_server.storage.index.date import parse_range
from fhir_server.storage.store import ResourceStore, Stored


class HistoryService:
    def __init__(self, db: Database, store: ResourceStore, access: AccessPolicy):
        self.db = db
        self.store = store
        self.access = access

    def bundle(
        self, base_url: str, *, res_type: str | None = None, res_id: str | None = None,
        params: dict[str, str], identity: Identity, default_count: int = 20, max_count: int = 1000,
    ) -> dict:
        if res_type:
            require_read(identity, res_type, "s")
        count = _int(params.get("_count"), "_count", default_count)
        count = min(count, max_count)
        offset = _int(params.get("_offset"), "_offset", 0)
        since = _instant(params.get("_since"), "_since")
        before = _instant(params.get("_at"), "_at") if params.get("_at") else None
        with self.db.read() as conn:
            if res_id and not self._known(conn, identity, res_type, res_id):
                raise NotFound(f"{res_type}/{res_id} is not known")
            versions, total = self.store.history(
                conn, res_type=res_type, res_id=res_id, since=since, before=before,
                limit=count, offset=offset, visible=self.access.view(conn, identity).rows,
            )
        path = "/".join(p for p in (res_type, res_id, "_history") if p)
        kept = [(k, v) for k, v in params.items() if k in ("_since", "_at")]

        def link(relation: str, at: int) -> dict:
            query = urlencode([*kept, ("_count", count), ("_offset", at)])
            return {"relation": relation, "url": f"{base_url}/{path}?{query}"}

        links = [link("self", offset), link("first", 0)]
        if offset > 0:
            links.append(link("previous", max(0, offset - count)))
        if offset + count < total:
            links.append(link("next", offset + count))
        return {
            "resourceType": "Bundle", "type": "history", "total": total, "link": links,
            "entry": [_entry(base_url, v) for v in versions],
        }

    def _known(self, conn, identity: Identity, res_type: str, res_id: str) -> bool:
        if self.store.current(conn, res_type, res_id) is None:
            return False
        if self.access.can_see(conn, identity, res_type, res_id):
            return True
        self.access.refused(identity, "R", res_type, res_id)
        return False


def _entry(base_url: str, version: Stored) -> dict:
    url = f"{base_url}/{version.res_type}/{version.res_id}"
    entry: dict = {"fullUrl": url}
    if not version.deleted:
        entry["resource"] = version.json()
    method = version.method
    entry["request"] = {"method": method, "url": version.res_type if method == "POST" else f"{version.res_type}/{version.res_id}"}
    status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK")
    entry["response"] = {
        "status": status, "etag": f'W/"{version.version}"', "lastModified": instant(version.last_updated),
    }
    return entry


def _int(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit():
        raise InvalidRequest(f"{name} must be a non-negative integer, not {value!r}")
    return int(value)


def _instant(value: str | None, name: str):
    if not value:
        return None
    try:
        return parse_range(value)[0]
    except ValueError:
        raise InvalidRequest(f"{name} must be a FHIR instant, not {value!r}") from None
