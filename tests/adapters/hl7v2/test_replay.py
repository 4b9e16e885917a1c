"""Replay: a message that failed is kept with its reason, the mapping table is fixed, the
message is replayed from the store (function, command, API) and its resources are written."""

from __future__ import annotations

from hl7_inbound_messages import oru_r01
from typer.testing import CliRunner

from adapters.hl7v2.inbound_store import Delivery
from adapters.hl7v2.pipeline import InboundPipeline
from adapters.hl7v2.replay import finish_interrupted, replay_records, replayable_ids
from fhir_server.auth.identity import SYSTEM
from fhir_server.cli import cli

# OBX-2 "NR" (numeric range) is not in mappings/hl7v2/vocabulary/value-types.csv: AE
UNKNOWN_VALUE_TYPE = [("GLU", "空腹血糖", "3.9^6.1", "mmol/L", "", "N")]


def message(control_id: str) -> bytes:
    return oru_r01(control_id, results=UNKNOWN_VALUE_TYPE).replace("|NM|", "|NR|").encode()


def fix_value_type_table(directory) -> None:
    with (directory / "vocabulary" / "value-types.csv").open("a", encoding="utf-8") as table:
        table.write('NR,text,"Numeric range, kept as text until it is mapped to valueRange"\n')


def failed_message(server, control_id: str) -> int:
    outcome = InboundPipeline(server).receive(message(control_id))
    assert outcome.status == "error"
    assert any(p.segment == "OBX" and p.field == 2 and p.severity == "E" for p in outcome.problems)
    return outcome.record_id


def test_a_failed_message_is_replayed_after_its_mapping_table_is_fixed(server, mappings):
    pipeline = InboundPipeline(server)
    record_id = failed_message(server, "NR-1")
    still = replay_records(pipeline, [record_id])[0]
    assert still.outcome.status == "error"  # not fixed yet: still failing, reason kept
    assert pipeline.store.get(record_id).attempts == 2

    fix_value_type_table(mappings)
    [result] = replay_records(pipeline, [record_id])
    assert result.outcome.status == "processed", result.outcome.problems
    record = pipeline.store.get(record_id)
    assert record.status == "processed" and record.ack_code == "AA" and record.attempts == 3
    [observation_ref] = [r for r in record.resources if r.startswith("Observation/")]
    observation = server.resources.read("Observation", observation_ref.split("/")[1], identity=SYSTEM)
    assert observation["valueString"] == "3.9^6.1"  # mapped as the fixed table says: text
    assert result.to_json()["replayed"] is True


def test_processed_and_duplicate_records_are_not_replayed(server, mappings):
    pipeline = InboundPipeline(server)
    done = pipeline.receive(oru_r01("OK-1").encode())
    again = pipeline.receive(oru_r01("OK-1").encode())
    results = replay_records(pipeline, [done.record_id, again.record_id, 999_999])
    assert [r.outcome for r in results] == [None, None, None]
    assert "processed" in results[0].reason and "duplicate" in results[1].reason
    assert results[2].reason == "No inbound message 999999"


def test_the_replay_command_replays_every_failed_message(server, mappings, settings):
    first, second = failed_message(server, "NR-2"), failed_message(server, "NR-3")
    assert replayable_ids(InboundPipeline(server)) == [first, second]
    fix_value_type_table(mappings)
    result = CliRunner().invoke(cli, ["hl7-replay", "--database-url", settings.database_url])
    assert result.exit_code == 0, result.output
    assert "2 replayed: 2 processed" in result.output
    store = InboundPipeline(server).store
    assert [store.get(i).status for i in (first, second)] == ["processed", "processed"]


def test_the_replay_command_says_what_still_fails(server, mappings, settings):
    record_id = failed_message(server, "NR-4")
    result = CliRunner().invoke(cli, ["hl7-replay", str(record_id), "--database-url", settings.database_url])
    assert result.exit_code == 1
    assert "1 replayed: 0 processed, 1 still failing" in result.output
    assert "value type 'NR'" in result.output


# -- the API ----------------------------------------------------------------------------------

def test_the_api_lists_inspects_and_replays_inbound_messages(server, client, mappings):
    record_id = failed_message(server, "NR-5")
    listed = client.get("/hl7v2/inbound", params={"status": "error"})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["counts"] == {"error": 1}
    [summary] = body["messages"]
    assert summary["id"] == record_id and summary["controlId"] == "NR-5"
    assert summary["sender"] == "LIS|县人民医院" and summary["ackCode"] == "AE"
    assert "message" not in summary  # the list leaves the raw message out

    detail = client.get(f"/hl7v2/inbound/{record_id}").json()
    assert detail["message"].startswith("MSH|^~\\&|LIS|县人民医院")
    assert "MSA|AE|NR-5" in detail["ack"]
    assert any(p["segment"] == "OBX" and p["field"] == 2 for p in detail["problems"])

    fix_value_type_table(mappings)
    replayed = client.post(f"/hl7v2/inbound/{record_id}/$replay")
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "processed"
    assert any(r.startswith("Observation/") for r in replayed.json()["resources"])
    again = client.post(f"/hl7v2/inbound/{record_id}/$replay")
    assert again.status_code == 409
    assert again.json()["resourceType"] == "OperationOutcome"
    assert client.get("/hl7v2/inbound/424242").status_code == 404
    assert client.get("/hl7v2/inbound", params={"status": "lost"}).status_code == 400


def test_the_api_replays_all_failed_messages_of_a_sender(server, client, mappings):
    ids = [failed_message(server, f"NR-{n}") for n in (6, 7)]
    fix_value_type_table(mappings)
    response = client.post("/hl7v2/inbound/$replay", params={"status": "error", "sender": "LIS|县人民医院"})
    assert response.status_code == 200, response.text
    assert [(r["id"], r["status"]) for r in response.json()["replayed"]] == [(i, "processed") for i in ids]


def test_the_api_needs_a_token_and_an_unrestricted_client(server, app, client, mappings):
    from fastapi.testclient import TestClient

    from tests.conftest import get_token, register_client

    with TestClient(app, base_url="http://testserver") as anonymous:
        response = anonymous.get("/hl7v2/inbound")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        client_id, secret = register_client(app, "township", "Organization/org-township-101", "system/*.cruds")
        token = get_token(anonymous, client_id, secret)
        bound = anonymous.get("/hl7v2/inbound", headers={"Authorization": f"Bearer {token}"})
        assert bound.status_code == 403
        client_id, secret = register_client(app, "reader", None, "system/*.rs")
        reader = {"Authorization": f"Bearer {get_token(anonymous, client_id, secret)}"}
        assert anonymous.get("/hl7v2/inbound", headers=reader).status_code == 200
        assert anonymous.post("/hl7v2/inbound/1/$replay", headers=reader).status_code == 403


def test_reading_a_message_over_the_api_is_audited_as_reading_what_it_wrote(server, client, auditor):
    outcome = InboundPipeline(server).receive(oru_r01("AUDIT-1").encode())
    assert outcome.status == "processed", outcome.problems
    patient = next(r for r in InboundPipeline(server).store.get(outcome.record_id).resources
                   if r.startswith("Patient/")).rsplit("/_history", 1)[0]
    assert client.get(f"/hl7v2/inbound/{outcome.record_id}").status_code == 200
    server.audit.flush()
    events = auditor.get("/fhir/AuditEvent", params={"patient": patient, "subtype": "hl7v2-inbound-read"}).json()
    [event] = [e["resource"] for e in events.get("entry", [])]
    assert [s["code"] for s in event["subtype"]] == ["hl7v2-inbound-read"]
    assert event["outcome"] == "0"


def test_a_listener_that_starts_writes_what_a_stopped_process_left_unfinished(server):
    """A ``received`` row (a delivery recovered from a stopped process's spool) is written when a
    listener starts; the sender's resend is then a duplicate (tests/adapters/hl7v2/test_spool.py
    kills a real process with a message in hand)."""
    pipeline = InboundPipeline(server)
    raw = oru_r01("CRASH1").encode()
    left = pipeline.store.receive(Delivery("LIS|县人民医院", "CRASH1", "ORU^R01", "2.5", "UNICODE UTF-8", "mllp",
                                           raw)).record_id
    assert pipeline.store.get(left).status == "received"

    [result] = finish_interrupted(pipeline)
    assert result.record_id == left and result.outcome.status == "processed"
    record = pipeline.store.get(left)
    assert record.status == "processed" and record.ack_code == "AA"
    assert any(r.startswith("DiagnosticReport/") for r in record.resources)
    # the sender's resend is answered as the duplicate it now is
    assert InboundPipeline(server).receive(raw).status == "duplicate"
    assert finish_interrupted(pipeline) == []
