"""Write generated demo resources through the resource service, one transaction per batch."""

from __future__ import annotations

from fhir_server.auth.identity import SYSTEM


def write_batch(server, batch: list[dict]) -> int:
    with server.db.write() as conn:
        for resource in batch:
            server.resources.create(resource, res_id=resource["id"], conn=conn, identity=SYSTEM)
    return len(batch)
