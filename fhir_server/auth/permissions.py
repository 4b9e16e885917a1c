"""Scope checks: which SMART action (c r u d s) on which resource type a request needs.

=========================================  ================================================
interaction or operation                   needs
=========================================  ================================================
read, vread                                ``r`` on the type
search (GET, POST _search), history        ``s`` on the type (instance and type history too)
system history (``GET [base]/_history``)   ``s`` on every type (a ``*`` scope)
create (also conditional)                  ``c`` on the type
update, conditional update, patch          ``u`` on the type
delete, conditional delete                 ``d`` on the type
``Patient/[id]/$everything``               ``r`` on Patient
``Observation/$lastn``                     ``s`` on Observation
``$meta``                                  ``r`` on the type (system level: on every type)
``$meta-add``, ``$meta-delete``            ``u`` on the type
``$reindex``                               ``u`` on the type (system level: ``u`` on every
                                           type, i.e. an administrator's ``system/*.u``)
``$lookup``, ``$validate-code``,           ``r`` on CodeSystem, ValueSet or ConceptMap
``$expand``, ``$translate``
``[type]/$validate``                       ``c`` on the type (a check before a create)
``[type]/[id]/$validate``                  ``r`` on the type (it reads the stored resource)
``$import-cda`` (system level)             ``c`` on every type; then each resource written is
                                           checked as a transaction entry is
``Encounter|ServiceRequest/[id]/$cda``     ``r`` on the type
``$import-followups`` (system level)       ``c`` on every type; then each resource written is
                                           checked as a transaction entry is
``$export-followups`` (system level)       ``s`` on every type
``GET /metadata``                          nothing (public, as FHIR requires)
batch / transaction                        each entry by its own method and URL
a chain (``subject:Patient.name``)         also ``s`` on every type the chain passes through
``_has:Observation:subject:...``           also ``s`` on the ``_has`` type (at every level)
=========================================  ================================================

A route the table does not know is refused, so that a new route cannot be open by mistake.
"""

from __future__ import annotations

from fhir_server.auth.identity import Identity
from fhir_server.errors import Forbidden
from fhir_server.search.parse import Filter, ReverseChain, SearchRequest

ACTION_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
INTERACTION_ACTIONS = {
    "read": "r", "vread": "r", "search-type": "s", "history-type": "s", "history-instance": "s",
    "history-system": "s", "create": "c", "update": "u", "patch": "u", "delete": "d",
}
OPERATION_ACTIONS = {
    "$everything": "r", "$lastn": "s", "$meta": "r", "$meta-add": "u", "$meta-delete": "u",
    "$reindex": "u", "$lookup": "r", "$validate-code": "r", "$expand": "r", "$translate": "r",
    "$validate": "c",
    "$import-cda": "c", "$cda": "r",
    "$import-followups": "c", "$export-followups": "s",
}
# Where an operation needs another action at instance level than at type level.
INSTANCE_OPERATION_ACTIONS = {"$validate": "r"}
PUBLIC_INTERACTIONS = frozenset({"capabilities"})
ENTRY_INTERACTIONS = frozenset({"transaction"})  # checked entry by entry, see authorize_entry


def authorize_route(identity: Identity, route, path_params: dict[str, str]) -> None:
    """Refuse (403) a request on ``route`` that the identity's scopes do not allow.

    ``route`` is an ``api.routes.Route``: its interaction or operation and its path say what
    is done, ``path_params['type']`` (or the path's literal type) on which type.
    """
    if route.interaction in PUBLIC_INTERACTIONS | ENTRY_INTERACTIONS:
        return
    action = INTERACTION_ACTIONS.get(route.interaction) or (
        route.level == "instance" and INSTANCE_OPERATION_ACTIONS.get(route.operation)
    ) or OPERATION_ACTIONS.get(route.operation)
    if action is None:
        raise Forbidden(f"No scope rule covers {route.method} {route.path}; refused")
    require(identity, _route_type(route, path_params), action)


def authorize_entry(identity: Identity, method: str, res_type: str, res_id: str | None) -> None:
    """Refuse (403) one batch or transaction entry the identity's scopes do not allow."""
    if method in ("GET", "HEAD"):
        action = "r" if res_id else "s"
    else:
        action = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}[method]
    require(identity, res_type, action)


def authorize_search(identity: Identity, request: SearchRequest) -> None:
    """Refuse (403) a search whose chains or ``_has`` filters search types the scopes do not
    allow: their matches say something about those resources even though none is returned."""
    for condition in request.filters:
        _authorize_filter(identity, condition)


def _authorize_filter(identity: Identity, condition: Filter | ReverseChain) -> None:
    if isinstance(condition, ReverseChain):
        require(identity, condition.source_type, "s")
        _authorize_filter(identity, condition.inner)
        return
    for link in condition.chain:
        require(identity, link.target, "s")


def require(identity: Identity, res_type: str, action: str) -> None:
    if identity.allows(res_type, action):
        return
    what = "every resource type" if res_type == "*" else res_type
    error = Forbidden(f"The access token's scopes do not allow {ACTION_NAMES[action]} ({action}) on {what}")
    error.headers["WWW-Authenticate"] = 'Bearer realm="county-fhir", error="insufficient_scope"'
    raise error


def _route_type(route, path_params: dict[str, str]) -> str:
    if "type" in path_params:
        return path_params["type"]
    if route.level == "system":
        return "*"
    return route.path.split("/")[1]  # a literal type, e.g. /Patient/{id}/$everything
