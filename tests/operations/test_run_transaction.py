"""The in-process transaction entry point adapters use (operations/bundle.run_transaction)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from fhir_server.auth.identity import SYSTEM
from fhir_server.errors import FhirError
from fhir_server.operations.bundle import run_transaction


def _bundle(*entries):
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


PATIENT = {
    "fullUrl": "urn:uuid:0b7e8c1e-0000-4000-8000-000000000001",
    "resource": {"resourceType": "Patient", "name": [{"text": "张三"}]},
    "request": {"method": "POST", "url": "Patient"},
}
OBSERVATION = {
    "resource": {
        "resourceType": "Observation", "status": "final",
        "code": {"text": "收缩压"},
        "subject": {"reference": "urn:uuid:0b7e8c1e-0000-4000-8000-000000000001"},
    },
    "request": {"method": "POST", "url": "Observation"},
}


def test_writes_resolve_references_and_run_alongside_in_the_same_transaction(server):
    seen = []

    def alongside(conn, results):
        # the entries are visible in this database transaction, before the commit
        count = conn.execute(text("SELECT count(*) FROM resource WHERE res_type = 'Patient'")).scalar()
        seen.append((count, [r["response"]["status"] for r in results]))

    results = run_transaction(server, _bundle(PATIENT, OBSERVATION), identity=SYSTEM, alongside=alongside)
    patient, observation = (r["resource"] for r in results)
    assert observation["subject"]["reference"] == f"Patient/{patient['id']}"
    assert patient["name"][0]["text"] == "张三"
    assert seen == [(1, ["201 Created", "201 Created"])]


def test_a_failure_alongside_rolls_everything_back(server):
    def alongside(conn, results):
        raise RuntimeError("inbound record could not be written")

    with pytest.raises(RuntimeError):
        run_transaction(server, _bundle(PATIENT), identity=SYSTEM, alongside=alongside)
    with server.db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM resource")).scalar() == 0


def test_only_transaction_bundles_are_taken(server):
    with pytest.raises(FhirError):
        run_transaction(server, {"resourceType": "Bundle", "type": "batch"}, identity=SYSTEM)
