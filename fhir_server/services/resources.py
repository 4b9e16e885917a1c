"""Create, read, update, patch and delete, including the conditional forms, above the store.

Every operation accepts an optional ``conn``: given one, it joins that transaction (a
transaction Bundle); otherwise it opens and commits its own. Resources are checked with the
fhir.resources models, get a server-assigned id (unless the client chose one with PUT),
``meta.versionId`` and ``meta.lastUpdated``, and are indexed in the same transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import jsonpatch
import orjson
from sqlalchemy import Connection

from fhir_server.auth.access import AccessPolicy, act_as, may_read, require_read
from fhir_server.auth.identity import Identity
from fhir_server.errors import (
    Gone,
    InvalidRequest,
    MultipleMatches,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from fhir_server.fhir.models import check_resource, is_valid_id
from fhir_server.search.indexer import Indexer
from fhir_server.storage.engine import Database
from fhir_server.storage.ids import new_resource_id
from fhir_server.storage.store import EncodedRow, ResourceStore, Stored

# (connection, resource type, query string pairs, caller) -> ids of the matching live resources
# the caller may see
Finder = Callable[[Connection, str, list[tuple[str, str]], Identity], list[str]]


@dataclass(frozen=True)
class Prepared:
    """A resource already checked and turned into index rows.

    This is the CPU-heavy part of a write; doing it before the write transaction lets server
    processes that share one SQLite file (``serve --workers``) overlap on it.
    """

    resource: dict
    rows: list[EncodedRow]


@dataclass(frozen=True)
class WriteResult:
    resource: dict
    created: bool  # True when a new resource was created (201), False on update or no-op
    version: int


def now_utc() -> datetime:
    """The current instant in naive UTC, to the millisecond (as meta.lastUpdated shows it)."""
    moment = datetime.now(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def instant(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class ResourceService:
    def __init__(self, db: Database, store: ResourceStore, indexer: Indexer, finder: Finder, access: AccessPolicy):
        self.db = db
        self.store = store
        self.indexer = indexer
        self.finder = finder
        # Every method takes the caller's ``identity``: a resource outside its organisation is
        # answered as unknown (404); who writes is recorded in the transaction for the hooks.
        self.access = access
        # Checks run on every resource about to be written, before the write transaction;
        # each raises a FhirError (e.g. 422 for a profile violation) to refuse it.
        self.checks: list[Callable[[dict], None]] = []
        # Hooks run inside the write transaction after each change:
        # (conn, before, after) with None for "did not exist" / "deleted".
        self.on_change: list[Callable[[Connection, dict | None, dict | None], None]] = []

    @contextlib.contextmanager
    def _tx(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.db.write() as new:
                yield new

    @contextlib.contextmanager
    def _read(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.db.read() as new:
                yield new

    # ---- reads ---------------------------------------------------------------------------
    def read(self, res_type: str, res_id: str, conn: Connection | None = None, *,
             identity: Identity) -> dict:
        return self.read_stored(res_type, res_id, conn, identity=identity).json()

    def read_stored(self, res_type: str, res_id: str, conn: Connection | None = None, *,
                    identity: Identity) -> Stored:
        require_read(identity, res_type)
        with self._read(conn) as c:
            stored = self._visible(c, identity, self.store.current(c, res_type, res_id), "R")
        return self._live(stored, res_type, res_id)

    def vread(self, res_type: str, res_id: str, version: str, conn: Connection | None = None, *,
              identity: Identity) -> dict:
        require_read(identity, res_type)
        if not version.isdigit():
            raise NotFound(f"{res_type}/{res_id} has no version {version!r}")
        with self._read(conn) as c:
            stored = self._visible(c, identity, self.store.version(c, res_type, res_id, int(version)), "R")
        if stored is None:
            raise NotFound(f"{res_type}/{res_id} has no version {version}")
        if stored.deleted:
            raise Gone(f"Version {version} of {res_type}/{res_id} is a deletion")
        return stored.json()

    def referring(self, res_type: str, res_id: str, conn: Connection | None = None, *,
                  identity: Identity) -> list[Stored]:
        """The live resources the caller may see that refer to ``res_type/res_id``."""
        with self._read(conn) as c:
            return [s for s in self.store.referring(c, res_type, res_id)
                    if may_read(identity, s.res_type) and self.access.can_see(c, identity, s.res_type, s.res_id)]

    @staticmethod
    def _live(stored: Stored | None, res_type: str, res_id: str) -> Stored:
        if stored is None:
            raise NotFound(f"{res_type}/{res_id} is not known")
        if stored.deleted:
            error = Gone(f"{res_type}/{res_id} was deleted")
            error.headers["ETag"] = f'W/"{stored.version}"'
            raise error
        return stored

    # ---- create --------------------------------------------------------------------------
    def create(
        self, resource: dict | Prepared, *, res_type: str | None = None, if_none_exist: str | None = None,
        conn: Connection | None = None, res_id: str | None = None, identity: Identity,
    ) -> WriteResult:
        prepared = self.prepare(resource, res_type)
        rtype = prepared.resource["resourceType"]
        with self._tx(conn) as c:
            act_as(c, identity)
            if if_none_exist:
                matches = self._match(c, rtype, if_none_exist, "If-None-Exist", identity)
                if matches:
                    existing = self.store.current(c, rtype, matches[0])
                    return WriteResult(existing.json(), False, existing.version)
            return self._insert(c, prepared, res_id or new_resource_id())

    def _insert(self, conn: Connection, prepared: Prepared, res_id: str) -> WriteResult:
        when = now_utc()
        resource = _stamp(prepared.resource, res_id, 1, when)
        pid = self.store.insert(conn, resource["resourceType"], res_id, orjson.dumps(resource), when)
        self.store.write_index(conn, pid, resource["resourceType"], prepared.rows, fresh=True)
        self._changed(conn, None, resource)
        return WriteResult(resource, True, 1)

    # ---- update --------------------------------------------------------------------------
    def update(
        self, res_type: str, res_id: str, resource: dict | Prepared, *, if_match: str | None = None,
        conn: Connection | None = None, identity: Identity,
    ) -> WriteResult:
        prepared = self.prepare(resource, res_type)
        resource = prepared.resource
        if resource.get("id") != res_id:
            raise InvalidRequest(
                f"The resource id {resource.get('id')!r} does not match the URL id {res_id!r}",
                expression="id",
            )
        if not is_valid_id(res_id):
            raise InvalidRequest(f"{res_id!r} is not a valid FHIR id")
        with self._tx(conn) as c:
            act_as(c, identity)
            current = self.store.current(c, res_type, res_id, for_update=True)
            if self._visible(c, identity, current, "U") is not current:
                raise NotFound(f"{res_type}/{res_id} is not known")
            _check_if_match(current, if_match)
            if current is None:  # update as create, with the client's id
                return self._insert(c, prepared, res_id)
            return self._replace(c, current, prepared, "PUT")

    def conditional_update(
        self, res_type: str, query: str, resource: dict, conn: Connection | None = None, *,
        identity: Identity,
    ) -> WriteResult:
        prepared = self.prepare(resource, res_type)
        resource = prepared.resource
        with self._tx(conn) as c:
            act_as(c, identity)
            matches = self._match(c, res_type, query, "conditional update", identity)
            if not matches:
                if resource.get("id"):
                    return self.update(res_type, resource["id"], prepared, conn=c, identity=identity)
                return self._insert(c, prepared, new_resource_id())
            if resource.get("id") and resource["id"] != matches[0]:
                raise InvalidRequest(
                    f"The resource id {resource['id']!r} does not match the resource found ({matches[0]})"
                )
            current = self.store.current(c, res_type, matches[0], for_update=True)
            return self._replace(c, current, Prepared({**resource, "id": matches[0]}, prepared.rows), "PUT")

    def _replace(self, conn: Connection, current: Stored, prepared: Prepared, method: str) -> WriteResult:
        when = now_utc()
        if not current.deleted and _same_content(current.json(), prepared.resource):
            return WriteResult(current.json(), False, current.version)  # no-op: no new version
        resource = _stamp(prepared.resource, current.res_id, current.version + 1, when)
        version = self.store.replace(conn, current, orjson.dumps(resource), when, method)
        self.store.write_index(conn, current.pid, current.res_type, prepared.rows, fresh=False)
        self._changed(conn, None if current.deleted else current.json(), resource)
        return WriteResult(resource, current.deleted, version)

    # ---- patch ---------------------------------------------------------------------------
    def patch(
        self, res_type: str, res_id: str, operations: object, *, if_match: str | None = None,
        conn: Connection | None = None, identity: Identity,
    ) -> WriteResult:
        if not isinstance(operations, list):
            raise InvalidRequest("A JSON Patch body must be an array of operations")

        def apply(current: dict) -> dict:
            try:
                return jsonpatch.apply_patch(current, operations)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
                raise Unprocessable(f"The patch cannot be applied: {exc}") from None

        return self.modify(res_type, res_id, apply, if_match=if_match, conn=conn, identity=identity,
                           method="PATCH")

    def modify(
        self, res_type: str, res_id: str, change: Callable[[dict], dict], *, if_match: str | None = None,
        conn: Connection | None = None, identity: Identity, method: str = "PUT",
    ) -> WriteResult:
        """Replace the current version by ``change(current)``: patch, ``$meta-add``.

        Needs only the update scope: the current version is read for the change, not returned.
        ``method`` is what the history records for the new version.
        """
        with self._tx(conn) as c:
            act_as(c, identity)
            current = self.store.current(c, res_type, res_id, for_update=True)
            current = self._live(self._visible(c, identity, current, "U"), res_type, res_id)
            _check_if_match(current, if_match)
            changed = change(current.json())
            if changed.get("resourceType") != res_type or changed.get("id") != res_id:
                raise Unprocessable("A patch may not change resourceType or id")
            return self._replace(c, current, self.prepare(changed, res_type), method)

    # ---- delete --------------------------------------------------------------------------
    def delete(self, res_type: str, res_id: str, conn: Connection | None = None, *,
               identity: Identity) -> int | None:
        """Delete; returns the deletion's version, or None when there was nothing to delete
        (also when the resource is outside the caller's organisation: as if it did not exist)."""
        with self._tx(conn) as c:
            act_as(c, identity)
            current = self._visible(c, identity, self.store.current(c, res_type, res_id, for_update=True), "D")
            if current is None or current.deleted:
                return None
            version = self.store.replace(c, current, None, now_utc(), "DELETE")
            self.store.clear_index(c, [current.pid])
            self._changed(c, current.json(), None)
            return version

    def conditional_delete(self, res_type: str, query: str, conn: Connection | None = None, *,
                           identity: Identity) -> int:
        """Delete the one match of ``query`` (412 if several); returns how many were deleted."""
        with self._tx(conn) as c:
            act_as(c, identity)
            matches = self._match(c, res_type, query, "conditional delete", identity)
            for res_id in matches:
                self.delete(res_type, res_id, conn=c, identity=identity)
            return len(matches)

    # ---- helpers -------------------------------------------------------------------------
    def prepare(self, resource: dict | Prepared, res_type: str | None = None) -> Prepared:
        """Check a resource (valid FHIR, every registered check) and compute its index rows;
        a FhirError refuses it. Already prepared resources pass through."""
        if isinstance(resource, Prepared):
            return resource
        check_resource(resource, res_type)
        for check in self.checks:
            check(resource)
        return Prepared(resource, self.store.encode(self.indexer.rows(resource)))

    def _visible(self, conn: Connection, identity: Identity, stored: Stored | None, action: str) -> Stored | None:
        """``stored``, or None when it is outside the caller's organisation (the refusal is audited)."""
        if stored is None or self.access.can_see(conn, identity, stored.res_type, stored.res_id):
            return stored
        self.access.refused(identity, action, stored.res_type, stored.res_id)
        return None

    def _match(self, conn: Connection, res_type: str, query: str, what: str, identity: Identity) -> list[str]:
        pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True)
        if not pairs:
            raise InvalidRequest(f"The {what} criteria are empty")
        matches = self.finder(conn, res_type, pairs, identity)
        if len(matches) > 1:
            raise MultipleMatches(f"The {what} criteria {query!r} match {len(matches)} resources")
        return matches

    def _changed(self, conn: Connection, before: dict | None, after: dict | None) -> None:
        for hook in self.on_change:
            hook(conn, before, after)


def _stamp(resource: dict, res_id: str, version: int, when: datetime) -> dict:
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant(when)
    return {"resourceType": resource["resourceType"], "id": res_id, "meta": meta,
            **{k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}}


def _same_content(old: dict, new: dict) -> bool:
    def strip(r: dict) -> dict:
        meta = {k: v for k, v in (r.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
        return {**{k: v for k, v in r.items() if k != "meta"}, "meta": meta}

    return strip(old) == strip(new)


def _check_if_match(current: Stored | None, if_match: str | None) -> None:
    if not if_match:
        return
    wanted = if_match.strip().removeprefix("W/").strip('"')
    if current is None or current.deleted:
        raise PreconditionFailed(f"If-Match {if_match} given, but the resource does not exist")
    if wanted != str(current.version):
        raise PreconditionFailed(
            f"If-Match {if_match} does not match the current version {current.version}"
        )


__all__ = ["Prepared", "ResourceService", "WriteResult", "now_utc", "instant"]
