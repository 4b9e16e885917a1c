"""``$meta``, ``$meta-add`` and ``$meta-delete``: the profiles, tags and security labels in use.

Implements http://hl7.org/fhir/OperationDefinition/Resource-meta,
http://hl7.org/fhir/OperationDefinition/Resource-meta-add and
http://hl7.org/fhir/OperationDefinition/Resource-meta-delete (R4/R4B).

- ``$meta`` at system level (``/$meta``) and type level (``/[type]/$meta``) returns the distinct
  profiles, tags and security labels of the live resources (of that type), read from the
  index rows of the ``_profile`` (``idx_uri``), ``_tag`` and ``_security`` (``idx_token``)
  parameters, so it is one indexed query each, not a scan of the resources. Index rows keep
  system and code but not the original display, so the codings carry no ``display``.
- ``$meta`` on an instance returns that resource's ``meta`` as stored (404 unknown, 410 deleted).
- ``$meta-add`` / ``$meta-delete`` take a ``meta`` parameter (``valueMeta``) and add or remove
  its profiles (by canonical) and tags and security labels (by system and code).

Design choice: ``$meta-add``/``$meta-delete`` write a NEW VERSION through
``ResourceService.update`` (same transaction as the read, with If-Match on the version read),
rather than changing the current version in place as the specification allows. Every change
of the stored resource is thus in its history, indexed, and seen by ``_history`` and
subscriptions alike; adding what is already there (or deleting what is absent) is a no-op and
creates no version. The answer is a Parameters with ``return`` = the resulting meta.

Access: system and type level count only resources inside the caller's access scope (and of
types it may read); an instance outside it is unknown (404), for reading and for changing.
"""

from __future__ import annotations

from sqlalchemy import exists, select

from fhir_server.api.http import FhirRequest, FhirResponse, version_headers
from fhir_server.auth.identity import Identity
from fhir_server.errors import InvalidRequest, NotFound
from fhir_server.operations.parameters import operation_parameters, parameters_resource
from fhir_server.server import Server
from fhir_server.storage.schema import INDEX_TABLES, resource


def system(server: Server, request: FhirRequest) -> FhirResponse:
    return _meta_response(_in_use(server, sorted(server.registry.supported_types), request.identity))


def type_level(server: Server, request: FhirRequest) -> FhirResponse:
    return _meta_response(_in_use(server, [_type(server, request)], request.identity))


def instance(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    found = server.resources.read(rtype, request.path_params["id"], identity=request.identity)
    server.audit.read(request.identity, "operation", [(rtype, found["id"])])
    return _meta_response(found.get("meta") or {}, version_headers(found, request.base_url))


def add(server: Server, request: FhirRequest) -> FhirResponse:
    return _change(server, request, adding=True)


def delete(server: Server, request: FhirRequest) -> FhirResponse:
    return _change(server, request, adding=False)


# ---- $meta at system and type level -------------------------------------------------------------
def _in_use(server: Server, types: list[str], identity: Identity) -> dict:
    tokens, uris = INDEX_TABLES["token"], INDEX_TABLES["uri"]
    meta: dict = {}
    with server.db.read() as conn:
        view = server.access.view(conn, identity)
        readable = [t for t in types if view.may_read(t)]
        scope = view.rows(resource)

        def keys(code: str) -> list[int]:
            return [k for k in (server.keys.lookup(t, code) for t in readable) if k is not None]

        def visible(table) -> list:
            """The index row's resource is inside the caller's scope."""
            if scope is None:
                return []
            return [exists(select(1).select_from(resource).where(resource.c.pid == table.c.pid, scope))]

        profile_keys = keys("_profile")
        if profile_keys:
            query = (select(uris.c.uri).where(uris.c.sp.in_(profile_keys), *visible(uris))
                     .distinct().order_by(uris.c.uri))
            profiles = [row.uri for row in conn.execute(query)]
            if profiles:
                meta["profile"] = profiles
        for element, code in (("security", "_security"), ("tag", "_tag")):
            token_keys = keys(code)
            if not token_keys:
                continue
            query = (
                select(tokens.c.system, tokens.c.code)
                .where(tokens.c.sp.in_(token_keys), tokens.c.code.is_not(None), *visible(tokens))
                .distinct()
                .order_by(tokens.c.system, tokens.c.code)
            )
            codings = [_coding(row.system, row.code) for row in conn.execute(query)]
            if codings:
                meta[element] = codings
    return meta


def _coding(system: str | None, code: str) -> dict:
    return {"system": system, "code": code} if system else {"code": code}


# ---- $meta-add / $meta-delete -------------------------------------------------------------------
def _change(server: Server, request: FhirRequest, *, adding: bool) -> FhirResponse:
    rtype = _type(server, request)
    res_id = request.path_params["id"]
    change = operation_parameters(request).get("meta")
    if not isinstance(change, dict):
        raise InvalidRequest("The operation needs a 'meta' parameter with a valueMeta")
    edit = _merge if adding else _remove

    def changed(current: dict) -> dict:
        return {**current, "meta": edit(current.get("meta") or {}, change)}

    result = server.resources.modify(rtype, res_id, changed, identity=request.identity)  # 404 / 410
    return _meta_response(result.resource["meta"], version_headers(result.resource, request.base_url))


def _merge(meta: dict, change: dict) -> dict:
    merged = dict(meta)
    profiles = list(merged.get("profile") or [])
    for profile in _profiles(change):
        if profile not in profiles:
            profiles.append(profile)
    if profiles:
        merged["profile"] = profiles
    for element in ("security", "tag"):
        codings = list(merged.get(element) or [])
        present = {_coding_key(c) for c in codings}
        for coding in _codings(change, element):
            if _coding_key(coding) not in present:
                codings.append(coding)
                present.add(_coding_key(coding))
        if codings:
            merged[element] = codings
    return merged


def _remove(meta: dict, change: dict) -> dict:
    kept = dict(meta)
    gone_profiles = set(_profiles(change))
    profiles = [p for p in kept.get("profile") or [] if p not in gone_profiles]
    kept.pop("profile", None)
    if profiles:
        kept["profile"] = profiles
    for element in ("security", "tag"):
        gone = {_coding_key(c) for c in _codings(change, element)}
        codings = [c for c in kept.get(element) or [] if _coding_key(c) not in gone]
        kept.pop(element, None)
        if codings:
            kept[element] = codings
    return kept


def _profiles(change: dict) -> list[str]:
    profiles = change.get("profile") or []
    if not isinstance(profiles, list) or not all(isinstance(p, str) and p for p in profiles):
        raise InvalidRequest("meta.profile must be a list of canonical URLs")
    return profiles


def _codings(change: dict, element: str) -> list[dict]:
    codings = change.get(element) or []
    if not isinstance(codings, list) or not all(isinstance(c, dict) and c.get("code") for c in codings):
        raise InvalidRequest(f"meta.{element} must be a list of Codings, each with a code")
    return codings


def _coding_key(coding: dict) -> tuple:
    return coding.get("system"), coding.get("code")


# ---- helpers ------------------------------------------------------------------------------------
def _type(server: Server, request: FhirRequest) -> str:
    rtype = request.path_params["type"]
    if rtype not in server.registry.supported_types:
        raise NotFound(f"Resource type {rtype!r} is not supported by this server")
    return rtype


def _meta_response(meta: dict, headers: dict[str, str] | None = None) -> FhirResponse:
    return FhirResponse(200, parameters_resource({"name": "return", "valueMeta": meta}), headers or {})
