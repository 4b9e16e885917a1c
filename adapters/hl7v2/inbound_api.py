"""The inbound store over HTTP: list and inspect received HL7 v2 messages, replay failed ones.

==============================================  ===========================================
route                                           what
==============================================  ===========================================
``GET  /hl7v2/inbound``                         records, oldest first: ``status``, ``sender``
                                                (``MSH-3|MSH-4``), ``control_id``, ``after``
                                                (an id: the next page), ``_count`` (50, at
                                                most 1000); also the count per status
``GET  /hl7v2/inbound/{id}``                    one record with the message and its ACK as text
``POST /hl7v2/inbound/{id}/$replay``            replay one record (404 unknown, 409 processed
                                                or a duplicate)
``POST /hl7v2/inbound/$replay``                 replay every record in ``status`` (default
                                                ``error``; ``refused`` too with
                                                ``status=error,refused``), of ``sender``
==============================================  ===========================================

Authentication is the API's (a Bearer token, 401 without one). The messages hold patients of
every organisation, so only an unrestricted client (bound to no organisation) may use these
routes, with ``r`` (inspect) and ``s`` (list) on every type, or ``c`` and ``u`` on every type
(replay, which writes resources): ``system/*.rs``, ``system/*.cu``, an administrator's
``system/*.cruds``. Answers are JSON; errors are OperationOutcomes.
"""

from __future__ import annotations

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.hl7v2.inbound_store import STATUSES
from adapters.hl7v2.pipeline import pipeline_for
from adapters.hl7v2.replay import replay_records, replayable_ids
from fhir_server.api.security import caller
from fhir_server.auth.identity import Identity
from fhir_server.auth.permissions import require
from fhir_server.errors import Conflict, FhirError, Forbidden, InvalidRequest, NotFound
from fhir_server.errors import operation_outcome

__all__ = ["inbound_routes", "PREFIX"]

PREFIX = "/hl7v2/inbound"
MAX_COUNT = 1000


def inbound_routes(server, authentication) -> list[Route]:
    def guarded(actions: str, work):
        async def endpoint(request: Request) -> Response:
            try:
                identity = await caller(server, authentication, request)
                _authorize(identity, actions)
                status, body = await anyio.to_thread.run_sync(work, request, identity)
                return _json(status, body)
            except FhirError as exc:
                return _json(exc.status, operation_outcome(exc.issues), exc.headers)

        return endpoint

    def listing(request: Request, identity: Identity):
        query = request.query_params
        statuses = _statuses(query.get("status"))
        count = _integer(query.get("_count"), "_count", 50)
        records = pipeline_for(server).store.find(
            status=statuses, sender=query.get("sender"), control_id=query.get("control_id"),
            after_id=_integer(query.get("after"), "after", None), limit=min(count, MAX_COUNT))
        return 200, {"counts": pipeline_for(server).store.counts(), "messages": [r.summary() for r in records]}

    def reading(request: Request, identity: Identity):
        record = pipeline_for(server).store.get(_record_id(request))
        if record is None:
            raise NotFound(f"No inbound message {request.path_params['id']}")
        # the raw message holds the patient data of the resources it wrote: audited as reading them
        written = [tuple(location.split("/")[:2]) for location in record.resources]
        server.audit.read(identity, "hl7v2-inbound-read", written, query=f"inbound message {record.id}")
        return 200, record.detail()

    def replaying_one(request: Request, identity: Identity):
        record_id = _record_id(request)
        [result] = replay_records(pipeline_for(server), [record_id])
        if result.outcome is None:
            raise (NotFound if result.reason and result.reason.startswith("No ") else Conflict)(result.reason)
        return 200, result.to_json()

    def replaying_all(request: Request, identity: Identity):
        statuses = _statuses(request.query_params.get("status")) or ["error"]
        pipeline = pipeline_for(server)
        ids = replayable_ids(pipeline, statuses=statuses, sender=request.query_params.get("sender"))
        return 200, {"replayed": [r.to_json() for r in replay_records(pipeline, ids)]}

    return [
        Route(PREFIX, guarded("rs", listing), methods=["GET"]),
        Route(PREFIX + "/$replay", guarded("cu", replaying_all), methods=["POST"]),
        Route(PREFIX + "/{id}", guarded("r", reading), methods=["GET"]),
        Route(PREFIX + "/{id}/$replay", guarded("cu", replaying_one), methods=["POST"]),
    ]


def _authorize(identity: Identity, actions: str) -> None:
    if identity.organization is not None and not identity.unrestricted:
        raise Forbidden("Inbound HL7 v2 messages hold patients of every organisation: only an unrestricted "
                        "client may read or replay them")
    for action in actions:
        require(identity, "*", action)


def _statuses(value: str | None) -> list[str] | None:
    if not value:
        return None
    statuses = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise InvalidRequest(f"Unknown status {', '.join(unknown)}; known: {', '.join(STATUSES)}")
    return statuses


def _integer(value: str | None, name: str, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise InvalidRequest(f"{name} must be a whole number, not {value!r}")
    return int(value)


def _record_id(request: Request) -> int:
    value = request.path_params["id"]
    if not value.isdigit():
        raise NotFound(f"No inbound message {value}")
    return int(value)


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")
