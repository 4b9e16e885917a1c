"""``$reindex``: rebuild the index rows of stored resources with the current search parameters.

The FHIR core specification has no OperationDefinition for ``$reindex``; this one follows the
``$reindex`` operation of HAPI FHIR (system level ``/$reindex``, type level ``/[type]/$reindex``,
instance level ``/[type]/[id]/$reindex``, all POST) with the parameters below. The
CapabilityStatement names its OperationDefinition, profiles/operations/OperationDefinition-reindex.json.

A SearchParameter POSTed after data was stored indexes new writes at once; ``$reindex`` makes it
apply to the old data too (and repairs index rows after an indexer fix).

- Optional parameter ``type`` (or ``_type``): comma-separated resource types to reindex at
  system level; by default every supported type.
- Before starting, the search-parameter keys are synced (``Server.sync_search_param_keys``).
- Resources are walked in row-key order in batches of ``settings.reindex_batch_size``; each
  batch is its own write transaction that locks its rows (``SELECT ... FOR UPDATE`` on
  PostgreSQL; SQLite writers are serialised anyway), re-reads them, and replaces their index
  rows, so a concurrent update is never overwritten with stale rows and the server stays
  usable between batches. Each batch is logged.
- The access tables (``fhir_server/storage/access.py``: which patient each resource belongs to,
  who holds each patient, the organisation tree) are rebuilt in the same batches, e.g. once
  after upgrading a database that predates them. Deleted resources keep the rows they had.
- The answer is a Parameters: ``resources`` (reindexed), ``batches``, ``seconds`` and
  ``types``, plus an informational ``outcome`` (OperationOutcome).

Limitation: the operation is synchronous, so the request lasts as long as the walk (minutes for
millions of resources; a client or proxy time-out does not stop it, the work done so far stays
committed, and running it again is harmless). An asynchronous job under
``Prefer: respond-async`` with a status endpoint is future work.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select

from fhir_server.api.http import FhirRequest, FhirResponse
from fhir_server.errors import InvalidRequest, NotFound, information_outcome
from fhir_server.operations.parameters import operation_parameters, parameters_resource
from fhir_server.server import Server
from fhir_server.storage.schema import resource

log = logging.getLogger(__name__)


def system(server: Server, request: FhirRequest) -> FhirResponse:
    names = operation_parameters(request).csv("type", "_type")
    if names is not None:
        unknown = [n for n in names if n not in server.registry.supported_types]
        if unknown:
            raise InvalidRequest(f"Cannot reindex unsupported resource type(s): {', '.join(unknown)}")
        types: list[str | None] = sorted(set(names))
    else:
        types = [None]  # one walk over every type, in row-key order
    return _run(server, types, label=", ".join(t for t in types if t) or "all")


def type_level(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    return _run(server, [rtype], label=rtype)


def instance(server: Server, request: FhirRequest) -> FhirResponse:
    rtype = _type(server, request)
    res_id = request.path_params["id"]
    started = time.monotonic()
    server.sync_search_param_keys()
    with server.db.write() as conn:
        stored = server.resources.read_stored(rtype, res_id, conn=conn, identity=request.identity)  # 404 / 410
        _reindex_batch(server, conn, [stored.pid])
    return _report(1, 1, time.monotonic() - started, f"{rtype}/{res_id}")


# ---- the walk ---------------------------------------------------------------------------------
def reindex(server: Server, types: list[str | None]) -> tuple[int, int, float]:
    """Reindex every live resource of ``types`` (None: all); returns (resources, batches, seconds)."""
    started = time.monotonic()
    server.sync_search_param_keys()
    size = max(1, server.settings.reindex_batch_size)
    done = batches = 0
    for rtype in types:
        after = 0
        while True:
            with server.db.write() as conn:
                batch = server.store.pids_of_type(conn, rtype, after, size)
                if not batch:
                    break
                count = _reindex_batch(server, conn, [s.pid for s in batch])
            after = batch[-1].pid
            done += count
            batches += 1
            log.info("$reindex %s: batch %d, %d resources (%d so far, %.1f s)",
                     rtype or "all types", batches, count, done, time.monotonic() - started)
            if len(batch) < size:
                break
    seconds = time.monotonic() - started
    log.info("$reindex done: %d resources in %d batches, %.1f s", done, batches, seconds)
    return done, batches, seconds


def _reindex_batch(server: Server, conn, pids: list[int]) -> int:
    """Lock, re-read and re-index the given rows in the caller's write transaction."""
    conn.execute(select(resource.c.pid).where(resource.c.pid.in_(pids)).with_for_update()).all()
    current = server.store.current_by_pids(conn, pids)
    count = 0
    for pid in pids:
        stored = current.get(pid)
        if stored is None or stored.deleted:  # deleted meanwhile: it has no index rows
            continue
        content = stored.json()
        rows = server.indexer.rows(content)
        server.store.write_index(conn, pid, stored.res_type, server.store.encode(rows), fresh=False)
        server.access.rebuild(conn, content)
        count += 1
    return count


def _run(server: Server, types: list[str | None], label: str) -> FhirResponse:
    done, batches, seconds = reindex(server, types)
    return _report(done, batches, seconds, label)


def _report(done: int, batches: int, seconds: float, label: str) -> FhirResponse:
    message = f"Reindexed {done} resource(s) ({label}) in {batches} batch(es), {seconds:.2f} s"
    return FhirResponse(200, parameters_resource(
        {"name": "resources", "valueInteger": done},
        {"name": "batches", "valueInteger": batches},
        {"name": "seconds", "valueDecimal": round(seconds, 3)},
        {"name": "types", "valueString": label},
        {"name": "outcome", "resource": information_outcome(message)},
    ))


def _type(server: Server, request: FhirRequest) -> str:
    rtype = request.path_params["type"]
    if rtype not in server.registry.supported_types:
        raise NotFound(f"Resource type {rtype!r} is not supported by this server")
    return rtype
