"""Write generated demo resources through the resource service, one transaction per batch."""

from __future__ import annotations


def write_batch(server, batch: list[dict]) -> int:
    with server.db.write() as conn:
        for resource in batch:
            server.resources.create(resource, res_id=resource["id"], conn=conn)
    return len(batch)
