"""Batch and transaction Bundles: ``POST [base]`` (FHIR R4 http.html#transaction).

Rules:

* The body must be a Bundle of type ``batch`` or ``transaction`` (else 400) with at most
  ``settings.max_bundle_entries`` entries (else 413). Every entry needs ``request.method`` and
  ``request.url`` (``Type``, ``Type/id``, ``Type/id/_history/vid`` or ``Type?criteria``, relative
  or under this server's base); a POST/PUT resource must be of the URL's type (400).
* A **transaction** runs in ONE database transaction, in the spec's order: DELETE, then POST,
  then PUT/PATCH, then GET/HEAD (so reads see the writes). Before anything is stored, every
  POST/PUT entry gets its identity (a new id, the ``ifNoneExist`` match, the conditional update's
  match, or the URL's id), and every ``reference`` anywhere in the Bundle's resources that names
  an entry's ``fullUrl`` becomes ``Type/id``; an unknown ``urn:uuid:``/``urn:oid:`` reference is
  an error. Conditional references (``Patient?identifier=s|v``) resolve to the Bundle entry with
  the same criteria, else by search: no match 404, several 412 (as HAPI). Duplicate fullUrls are
  a 400. Any failing entry rolls everything back, and the response is that entry's
  OperationOutcome and status, its issues located at ``Bundle.entry[n]``.
* When no id or reference needs a search (no conditional entries or references), ids,
  references, validation and index rows are all worked out before the write transaction
  begins, so that server processes sharing a SQLite file overlap on that work.
* A **batch** runs each entry on its own, in order, each in its own database transaction with
  the same steps, except that fullUrl (``urn:uuid``) references are stored as they are. A failing
  entry becomes a response entry with its status and ``outcome``; the batch answers 200.
* Response entries keep the request order, with ``response.status``, ``location``
  (``Type/id/_history/v``), ``etag`` and ``lastModified``. Writes carry the resource, nothing or
  an OperationOutcome according to ``Prefer: return=``; deletes answer ``204 No Content``.
* Every entry runs with the caller's identity (``request.identity``): conditional matches and
  conditional references see only the caller's access scope, and an entry that reads, changes
  or creates patient data outside it fails as the single interaction would (404 / 403).
* PATCH takes a Binary holding a JSON Patch (base64 ``data``); FHIRPath Patch (Parameters) is 422.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from http import HTTPStatus
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import Connection

from fhir_server.api.http import FhirRequest, FhirResponse, version_headers, written
from fhir_server.auth.identity import Identity
from fhir_server.auth.permissions import authorize_entry
from fhir_server.errors import (
    FhirError,
    InvalidRequest,
    MultipleMatches,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    operation_outcome,
)
from fhir_server.fhir.formats import PATCH_JSON
from fhir_server.fhir.references import map_references
from fhir_server.server import Server
from fhir_server.services.resources import Prepared
from fhir_server.services.search import searchset_bundle
from fhir_server.storage.ids import new_resource_id

PHASE = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_URL = re.compile(
    r"^(?P<type>[A-Z][A-Za-z]+)(?:/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/(?P<vid>[^/?]+))?)?"
    r"(?:\?(?P<query>.*))?$"
)
_CONDITIONAL_REFERENCE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)\?(?P<query>.+)$")
_PLACEHOLDER = ("urn:uuid:", "urn:oid:")
# Work an in-process caller does in the transaction's database transaction, before the commit.
Alongside = Callable[[Connection, list[dict]], None]


@dataclass
class Entry:
    """One request entry, parsed; ``target`` is the id a POST/PUT writes, fixed before writing."""

    index: int
    method: str
    rtype: str
    rid: str | None
    vid: str | None
    query: str | None
    resource: dict | None
    full_url: str | None
    if_match: str | None
    if_none_exist: str | None
    target: str | None = None
    existing: bool = False  # a POST whose ifNoneExist matched: nothing is created
    prepared: Prepared | None = None  # the checked, indexed resource a POST/PUT writes


class _NeedsLookup(Exception):
    """Raised while resolving without a database: an id or reference needs a search."""


def batch_or_transaction(server: Server, request: FhirRequest) -> FhirResponse:
    bundle = request.body
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequest("POST [base] takes a Bundle of type batch or transaction")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise InvalidRequest(
            f"Bundle.type must be batch or transaction, not {kind!r}", expression="Bundle.type"
        )
    items = bundle.get("entry") or []
    if not isinstance(items, list):
        raise InvalidRequest("Bundle.entry must be a list", expression="Bundle.entry")
    limit = server.settings.max_bundle_entries
    if len(items) > limit:
        raise PayloadTooLarge(f"The Bundle has {len(items)} entries; the limit is {limit}")
    run = _transaction if kind == "transaction" else _batch
    response = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": f"{kind}-response"}
    entries = run(server, request, items)
    if entries:
        response["entry"] = entries
    return FhirResponse(200, response)


def run_transaction(server: Server, bundle: dict, *, identity: Identity,
                    alongside: Alongside | None = None) -> list[dict]:
    """Run a transaction Bundle in-process, as ``POST [base]`` would, for adapters and the CLI.

    Returns the response entries (each with ``response`` and the stored ``resource``).
    ``alongside(conn, response_entries)`` runs in the same database transaction after the
    last entry and before the commit (an adapter's inbound-message record, a Provenance);
    anything it raises rolls the whole transaction back. Errors are raised as ``FhirError``.
    """
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        raise InvalidRequest("run_transaction takes a Bundle of type transaction")
    request = FhirRequest(
        method="POST", path_params={}, query=[], headers={"prefer": "return=representation"},
        raw_body=b"", base_url=server.settings.base_url, identity=identity, _body=bundle,
    )
    return _transaction(server, request, bundle.get("entry") or [], alongside)


def _transaction(server: Server, request: FhirRequest, items: list,
                 alongside: Alongside | None = None) -> list[dict]:
    entries = []
    for index, item in enumerate(items):
        with _at(index):
            entries.append(_parse_entry(server, request, index, item))
    _check_unique_full_urls(entries)
    return _write(server, request, entries, link_full_urls=True, alongside=alongside)


def _batch(server: Server, request: FhirRequest, items: list) -> list[dict]:
    responses = []
    for index, item in enumerate(items):
        try:
            with _at(index):
                entry = _parse_entry(server, request, index, item)
            responses += _write(server, request, [entry], link_full_urls=False)
        except FhirError as exc:
            failure = {"status": _status(exc.status), "outcome": operation_outcome(exc.issues)}
            responses.append({"response": failure})
    return responses


@contextlib.contextmanager
def _at(index: int) -> Iterator[None]:
    """Locate any error raised in the block at ``Bundle.entry[index]``."""
    try:
        yield
    except FhirError as exc:
        where = f"Bundle.entry[{index}]"
        exc.issues = [
            replace(issue, diagnostics=f"{where}: {issue.diagnostics}",
                    expression=(where, *issue.expression))
            for issue in exc.issues
        ]
        raise


# ---- parsing ------------------------------------------------------------------------------
def _parse_entry(server: Server, request: FhirRequest, index: int, item: object) -> Entry:
    spec = item.get("request") if isinstance(item, dict) else None
    if not isinstance(spec, dict) or not spec.get("method") or not spec.get("url"):
        raise InvalidRequest("The entry needs a request with method and url")
    method = str(spec["method"]).upper()
    if method not in PHASE:
        raise InvalidRequest(f"request.method {method!r} is not supported")
    url = _relative(str(spec["url"]), request.base_url, server.settings.base_url)
    match = _URL.match(url)
    if not match:
        raise InvalidRequest(
            f"request.url {spec['url']!r} is not Type, Type/id, Type/id/_history/vid "
            "or Type?criteria"
        )
    rtype, rid, query = match["type"], match["id"], match["query"] or None
    if rtype not in server.registry.supported_types:
        raise NotFound(f"Resource type {rtype!r} is not supported by this server")
    resource = item.get("resource")
    if method in ("POST", "PUT", "PATCH") and not isinstance(resource, dict):
        raise InvalidRequest(f"A {method} entry needs a resource")
    if method in ("POST", "PUT") and resource.get("resourceType") != rtype:
        raise InvalidRequest(
            f"The resource is a {resource.get('resourceType')}, but request.url names {rtype}"
        )
    if method == "POST" and (rid or query):
        raise InvalidRequest("A POST entry's request.url is the resource type only")
    if method in ("PUT", "PATCH", "DELETE") and not (rid or query):
        raise InvalidRequest(f"A {method} entry's request.url needs an id or search criteria")
    authorize_entry(request.identity, method, rtype, rid)
    return Entry(index, method, rtype, rid, match["vid"], query, resource, item.get("fullUrl"),
                 spec.get("ifMatch"), spec.get("ifNoneExist"))


def _relative(url: str, *bases: str) -> str:
    for base in bases:
        if url.startswith(base.rstrip("/") + "/"):
            return url[len(base.rstrip("/")) + 1:]
    return url.lstrip("/")


def _check_unique_full_urls(entries: list[Entry]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.full_url in seen:
            raise InvalidRequest(
                f"Bundle.entry[{entry.index}] repeats the fullUrl {entry.full_url} "
                f"of Bundle.entry[{seen[entry.full_url]}]",
                expression=f"Bundle.entry[{entry.index}].fullUrl",
            )
        if entry.full_url:
            seen[entry.full_url] = entry.index


# ---- processing ---------------------------------------------------------------------------
def _write(server: Server, request: FhirRequest, entries: list[Entry], link_full_urls: bool,
           alongside: Alongside | None = None) -> list[dict]:
    """Run ``entries`` in one database transaction, resolving ahead of it where possible."""
    ordered = sorted(entries, key=lambda e: PHASE[e.method])
    writes = [e for e in ordered if e.method in ("POST", "PUT", "PATCH")]
    identity = request.identity
    try:
        _resolve(server, None, writes, link_full_urls, identity)
        resolved = True
    except _NeedsLookup:
        resolved = False
    with server.db.write() as conn:
        done: dict[int, dict] = {}
        for entry in (e for e in ordered if e.method == "DELETE"):
            with _at(entry.index):
                done[entry.index] = _delete(server, request, conn, entry)
        if not resolved:
            _resolve(server, conn, writes, link_full_urls, identity)
        for entry in (e for e in ordered if e.method != "DELETE"):
            with _at(entry.index):
                done[entry.index] = EXECUTE[entry.method](server, request, conn, entry)
        results = [done[e.index] for e in entries]
        if alongside is not None:
            alongside(conn, results)
        return results


def _resolve(server: Server, conn: Connection | None, writes: list[Entry], link_full_urls: bool,
             identity: Identity) -> None:
    """Fix every POST/PUT's id, rewrite references, then check and index the resources.

    Without a connection (``conn`` None) a needed search raises ``_NeedsLookup``; what was
    done by then stays valid, and the call is repeated inside the transaction.
    """
    by_criteria = _assign_targets(server, conn, writes, identity)
    links = {e.full_url: f"{e.rtype}/{e.target}" for e in writes if e.full_url and e.target}
    _rewrite_references(server, conn, writes, links if link_full_urls else None, by_criteria, identity)
    for entry in writes:
        if entry.method == "PATCH" or entry.existing:
            continue
        with _at(entry.index):
            resource = entry.resource if entry.method == "POST" or entry.rid else {
                **entry.resource, "id": entry.target}
            entry.prepared = server.resources.prepare(resource, entry.rtype)


def _assign_targets(server: Server, conn: Connection | None, writes: list[Entry],
                    identity: Identity) -> dict[tuple, str]:
    """Fix the id every POST/PUT will write; returns {(type, criteria): id} of their conditions."""
    by_criteria: dict[tuple, str] = {}
    for entry in writes:
        with _at(entry.index):
            if entry.method == "PATCH" or entry.target is not None:
                continue  # PATCH finds its resource when it runs; or fixed by an earlier pass
            if entry.method == "PUT" and entry.rid:
                entry.target = entry.rid
                continue
            criteria = _criteria_of(entry)
            if not criteria:
                entry.target = new_resource_id()
                continue
            if conn is None:
                raise _NeedsLookup
            key = _criteria_key(entry.rtype, criteria)
            found = by_criteria.get(key) or _match(server, conn, entry.rtype, criteria, identity)
            own_id = entry.resource.get("id") if entry.method == "PUT" else None
            if found and own_id and own_id != found:
                raise InvalidRequest(
                    f"The resource id {own_id!r} does not match the resource found ({found})"
                )
            entry.target = found or own_id or new_resource_id()
            entry.existing = bool(found) and entry.method == "POST"
            by_criteria[key] = entry.target
    return by_criteria


def _criteria_of(entry: Entry) -> str | None:
    return entry.if_none_exist if entry.method == "POST" else entry.query


def _criteria_key(rtype: str, criteria: str) -> tuple:
    return rtype, tuple(sorted(_pairs(criteria)))


def _pairs(criteria: str) -> list[tuple[str, str]]:
    """The pairs of ``a=b&c=d``, also when sent as ``Type?a=b&c=d`` (some clients do)."""
    return parse_qsl(criteria.split("?", 1)[-1], keep_blank_values=True)


def _match(server: Server, conn: Connection, rtype: str, criteria: str, identity: Identity) -> str | None:
    """The one live resource the caller sees matching ``criteria``, None if none; several is a 412."""
    pairs = _pairs(criteria)
    if not pairs:
        raise InvalidRequest(f"The criteria {criteria!r} are empty")
    ids = server.search.find_ids(conn, rtype, pairs, identity)
    if len(ids) > 1:
        raise MultipleMatches(f"The criteria {criteria!r} match several {rtype} resources")
    return ids[0] if ids else None


# ---- reference rewriting -----------------------------------------------------------------
def _rewrite_references(
    server: Server, conn: Connection | None, writes: list[Entry], links: dict[str, str] | None,
    by_criteria: dict[tuple, str], identity: Identity,
) -> None:
    """Point fullUrl and conditional references at ``Type/id`` (links None: leave fullUrls)."""
    resolved: dict[str, str] = {}

    def resolve(reference: str) -> str:
        if links is not None and reference in links:
            return links[reference]
        if links is not None and reference.startswith(_PLACEHOLDER):
            raise InvalidRequest(f"The reference {reference} names no entry of this transaction")
        conditional = _CONDITIONAL_REFERENCE.match(reference)
        if not conditional:
            return reference
        if reference not in resolved:
            if conn is None:
                raise _NeedsLookup
            rtype, query = conditional["type"], conditional["query"]
            found = by_criteria.get(_criteria_key(rtype, query))
            found = found or _match(server, conn, rtype, query, identity)
            if not found:
                raise NotFound(f"The conditional reference {reference} matches no resource")
            resolved[reference] = f"{rtype}/{found}"
        return resolved[reference]

    for entry in writes:
        if entry.method != "PATCH":
            with _at(entry.index):
                entry.resource = map_references(entry.resource, resolve)


# ---- one entry per method ----------------------------------------------------------------
def _delete(server: Server, request: FhirRequest, conn: Connection, entry: Entry) -> dict:
    if entry.rid:
        version = server.resources.delete(entry.rtype, entry.rid, conn=conn, identity=request.identity)
    else:
        server.resources.conditional_delete(entry.rtype, entry.query, conn=conn, identity=request.identity)
        version = None
    return {"response": {"status": _status(204), **({"etag": f'W/"{version}"'} if version else {})}}


def _post(server: Server, request: FhirRequest, conn: Connection, entry: Entry) -> dict:
    if entry.existing:
        existing = server.resources.read(entry.rtype, entry.target, conn=conn, identity=request.identity)
        return _written_entry(request, existing, 200)
    result = server.resources.create(entry.prepared, res_type=entry.rtype, conn=conn, res_id=entry.target,
                                     identity=request.identity)
    return _written_entry(request, result.resource, 201)


def _put(server: Server, request: FhirRequest, conn: Connection, entry: Entry) -> dict:
    result = server.resources.update(
        entry.rtype, entry.target, entry.prepared, if_match=entry.if_match, conn=conn,
        identity=request.identity,
    )
    return _written_entry(request, result.resource, 201 if result.created else 200)


def _patch(server: Server, request: FhirRequest, conn: Connection, entry: Entry) -> dict:
    operations = _json_patch(entry.resource)
    rid = entry.rid or _match(server, conn, entry.rtype, entry.query, request.identity)
    if rid is None:
        raise NotFound(f"The conditional patch criteria {entry.query!r} match no resource")
    result = server.resources.patch(
        entry.rtype, rid, operations, if_match=entry.if_match, conn=conn, identity=request.identity,
    )
    return _written_entry(request, result.resource, 200)


def _json_patch(resource: dict) -> object:
    if resource.get("resourceType") == "Parameters":
        raise Unprocessable("FHIRPath Patch is not supported; send a Binary holding a JSON Patch")
    content_type = str(resource.get("contentType", ""))
    if resource.get("resourceType") != "Binary" or not content_type.startswith(PATCH_JSON):
        raise InvalidRequest(f"A PATCH entry's resource must be a Binary of {PATCH_JSON}")
    try:
        return orjson.loads(base64.b64decode(resource.get("data", ""), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"The Binary data is not a base64 JSON Patch: {exc}") from None


def _get(server: Server, request: FhirRequest, conn: Connection, entry: Entry) -> dict:
    if entry.rid is None:
        pairs = parse_qsl(entry.query or "", keep_blank_values=True)
        parsed = server.search.parse(entry.rtype, pairs, strict=request.strict)
        result = server.search.search(parsed, conn, identity=request.identity)
        returned = [(s.res_type, s.res_id) for s in (*result.matches, *result.included)]
        server.audit.read(request.identity, "search-type", returned, query=f"{entry.rtype}?{entry.query or ''}")
        found = searchset_bundle(result, request.base_url, entry.rtype, pairs)
        return _read_entry(entry, found, {}, None)
    if entry.vid:
        resource = server.resources.vread(entry.rtype, entry.rid, entry.vid, conn=conn, identity=request.identity)
    else:
        resource = server.resources.read(entry.rtype, entry.rid, conn=conn, identity=request.identity)
    server.audit.read(request.identity, "vread" if entry.vid else "read", [(entry.rtype, entry.rid)])
    full_url = f"{request.base_url}/{entry.rtype}/{entry.rid}"
    return _read_entry(entry, resource, version_headers(resource, request.base_url), full_url)


EXECUTE: dict[str, Callable[[Server, FhirRequest, Connection, Entry], dict]] = {
    "POST": _post, "PUT": _put, "PATCH": _patch, "GET": _get, "HEAD": _get,
}


# ---- response entries ---------------------------------------------------------------------
def _status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def _response_fields(status: int, headers: dict[str, str], base_url: str) -> dict:
    fields = {
        "status": _status(status),
        "location": headers.get("Location", "").removeprefix(base_url + "/"),
        "etag": headers.get("ETag"),
        "lastModified": headers.get("Last-Modified"),
    }
    return {key: value for key, value in fields.items() if value}


def _written_entry(request: FhirRequest, resource: dict, status: int) -> dict:
    """A write's response entry, shaped by ``Prefer: return=`` as the single interactions are."""
    shaped = written(request, resource, status)
    entry: dict = {"fullUrl": f"{request.base_url}/{resource['resourceType']}/{resource['id']}"}
    response = _response_fields(status, shaped.headers, request.base_url)
    if shaped.resource is not None and request.prefer.get("return") == "operationoutcome":
        response["outcome"] = shaped.resource
    elif shaped.resource is not None:
        entry["resource"] = shaped.resource
    entry["response"] = response
    return entry


def _read_entry(
    entry: Entry, resource: dict, headers: dict[str, str], full_url: str | None,
) -> dict:
    out: dict = {"fullUrl": full_url} if full_url else {}
    if entry.method == "GET":
        out["resource"] = resource
    out["response"] = _response_fields(200, headers, "")
    return out
