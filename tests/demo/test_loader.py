"""Loading the demo county through the service layer, in one process or several."""

from __future__ import annotations

from sqlalchemy import select

from fhir_server.demo.county import generate_county
from fhir_server.demo.loader import load_county
from fhir_server.storage.schema import resource


def stored(server) -> set[tuple[str, str]]:
    with server.db.read() as conn:
        rows = conn.execute(select(resource.c.res_type, resource.c.res_id).where(resource.c.res_type.not_in(
            ("StructureDefinition", "ValueSet", "CodeSystem", "ConceptMap", "OperationDefinition"))))
        return {(row.res_type, row.res_id) for row in rows}


def test_two_loader_processes_write_exactly_the_generated_county(server):
    """Every generated resource once, the groups after their members; progress counts residents."""
    seen: list[int] = []
    written = load_county(server, 12, seed=5, jobs=2, progress=seen.append)
    generated = {(r["resourceType"], r["id"]) for batch in generate_county(12, seed=5) for r in batch}
    assert written == len(generated)
    assert stored(server) == generated
    assert seen[-1] == 12 and seen == sorted(seen)


def test_one_process_reports_each_resident(server):
    seen: list[int] = []
    written = load_county(server, 3, seed=5, progress=seen.append)
    assert seen == [1, 2, 3, 3]  # the last call follows the groups
    assert written == len(stored(server))
