"""Audit: every read, search and write of patient data and every refusal leaves an AuditEvent;
writes through a journal committed with them, reads in batches; only auditors read them, nobody changes
them; and no resident ID number or name reaches the logs."""

from __future__ import annotations

import base64
import logging
import threading
import time

import pytest

from fhir_server.auth.audit import record_failed_authentication
from fhir_server.auth.identity import SYSTEM, Identity
from fhir_server.errors import Forbidden
from fhir_server.fhir.models import check_resource
from tests.access.conftest import PATIENTS, RESIDENT_ID, identity, observation, patient


def events(auditor, query: str) -> list[dict]:
    bundle = auditor.bundle(f"AuditEvent?{query}&_count=500")
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "AuditEvent"]


def summary(event: dict) -> tuple:
    """(subtype, action, outcome, the patients, the other resources) of an event."""
    whats = [e["what"]["reference"] for e in event.get("entity", []) if "what" in e]
    return (event["subtype"][0]["code"], event["action"], event["outcome"],
            frozenset(w for w in whats if w.startswith("Patient/")),
            frozenset(w for w in whats if not w.startswith("Patient/")))


def test_reads_searches_writes_and_refusals_are_audited(as_, server):
    village, auditor = as_("village"), as_("auditor")
    assert village.get("Patient/p-a1").status_code == 200
    assert village.get("Observation?code=1558-6&_include=Observation:subject").status_code == 200
    created = village.post("Observation", json=observation("w-a1", "p-a1")).json()
    assert village.get("Patient/p-b1").status_code == 404
    assert village.post("Observation", json=observation("w-b1", "p-b1")).status_code == 403
    assert village.get("Organization/vc-a1").status_code == 200  # not patient data: no event
    server.audit.flush()

    found = {summary(e) for e in events(auditor, "agent=Organization/vc-a1")}
    a1, b1 = frozenset({"Patient/p-a1"}), frozenset({"Patient/p-b1"})
    refused_create = next(s for s in found if s[:3] == ("create", "C", "4"))
    assert found == {
        ("read", "R", "0", a1, frozenset()),
        ("search-type", "E", "0", a1, frozenset({"Observation/obs-a1"})),
        ("create", "C", "0", a1, frozenset({f"Observation/{created['id']}"})),
        ("read", "R", "4", b1, frozenset()),
        refused_create,
    }
    assert refused_create[3] == b1  # the refused create names the patient it was for
    search = next(e for e in events(auditor, "agent=Organization/vc-a1&subtype=search-type"))
    query = next(e["query"] for e in search["entity"] if "query" in e)
    assert base64.b64decode(query).decode().startswith("Observation?code=1558-6")
    agent = search["agent"][0]
    assert agent["requestor"] is True and agent["who"]["identifier"]["value"] == agent["altId"]
    assert search["agent"][1]["who"]["reference"] == "Organization/vc-a1"
    for event in events(auditor, "agent=Organization/vc-a1"):
        check_resource(event, "AuditEvent")  # valid FHIR R4 AuditEvents


def _journal(server) -> list[dict]:
    import orjson

    from fhir_server.storage import audit_journal

    with server.db.read() as conn:
        return [orjson.loads(record) for _, record in audit_journal.take(conn, 1000)]


def test_a_write_commits_its_audit_record_with_it_and_a_flush_makes_it_an_event(as_, server):
    """The write's record is in the journal when the write returns, before any flush; a write
    that rolls back leaves none; the flush turns the records into events and empties the journal."""
    township, auditor = as_("township"), as_("auditor")
    updated = {**township.get("Patient/p-a2").json(), "gender": "male"}
    server.audit.flush()
    with server.audit._flushing:  # no flush can run: only the writes' own journal records appear
        assert township.put("Patient/p-a2", json=updated).status_code == 200
        assert township.delete("Condition/cond-a2").status_code == 200
        transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation("t-a2", "p-a2"), "request": {"method": "POST", "url": "Observation"}},
            {"resource": observation("t-b1", "p-b1"), "request": {"method": "POST", "url": "Observation"}},
        ]}
        assert township.post("", json=transaction).status_code == 403  # rolled back
        records = _journal(server)
        assert [(r["interaction"], r["changes"]) for r in records] == [
            ("update", [["Patient", "p-a2", ["p-a2"]]]),
            ("delete", [["Condition", "cond-a2", ["p-a2"]]]),
        ]
        assert {r["organization"] for r in records} == {"Organization/th-a"}
        assert events(auditor, "patient=Patient/p-a2&action=C,U,D") == []
    server.audit.flush()
    found = {summary(e)[:3] for e in events(auditor, "patient=Patient/p-a2&action=C,U,D")}
    assert found == {("update", "U", "0"), ("delete", "D", "0")}  # the rolled-back create left nothing
    assert _journal(server) == []


def test_records_a_flush_takes_together_make_one_event_per_caller_and_interaction(as_, server):
    county, auditor = as_("county"), as_("auditor")
    server.audit.flush()
    with server.audit._flushing:
        for name in ("m-1", "m-2"):
            assert county.put(f"Observation/{name}", json=observation(name, "p-a1")).status_code == 201
            time.sleep(0.002)
    server.audit.flush()
    [event] = events(auditor, "patient=Patient/p-a1&subtype=create")
    assert summary(event)[3:] == (frozenset({"Patient/p-a1"}), frozenset({"Observation/m-1", "Observation/m-2"}))
    assert event["recorded"] == event["period"]["start"] < event["period"]["end"]


def test_an_unreadable_journal_record_is_kept_and_does_not_stop_the_others(as_, server, caplog):
    """A record this server cannot read (another version wrote it, or it is damaged) stays in
    the journal, named in the log, and the records behind it still become events."""
    from fhir_server.storage import audit_journal

    server.audit.flush()
    with server.db.write() as conn:
        audit_journal.append(conn, [b"not json", b'{"subject": "x"}'])
    try:
        assert as_("county").put("Observation/after", json=observation("after", "p-a1")).status_code == 201
        with caplog.at_level(logging.ERROR, logger="fhir_server.auth.audit"):
            server.audit.flush()
            server.audit.flush()  # the unreadable ones are skipped, not retried in a loop
        [event] = events(as_("auditor"), "entity=Observation/after")
        assert summary(event)[:3] == ("create", "C", "0")
        with server.db.read() as conn:
            kept = [record for _, record in audit_journal.take(conn, 10)]
        assert kept == [b"not json", b'{"subject": "x"}']
        logged = [r.getMessage() for r in caplog.records]
        assert len(logged) == 2 and all("cannot be read" in m for m in logged)
    finally:  # the suite empties the tables between tests, and PostgreSQL then gives the ids again
        with server.db.write() as conn:
            audit_journal.remove(conn, sorted(server.audit._unreadable))
        server.audit._unreadable.clear()


def test_records_left_by_a_killed_process_become_events_when_the_next_one_starts(settings, county, server):
    """A process killed between a write's commit and the flush leaves its record in the journal
    (nothing lost); the next server's start writes the event, once, even if two start together."""
    from fhir_server.server import Server

    hospital = identity("county")
    with server.audit._flushing:  # the suite's own server must not flush the record meanwhile
        stopped = Server(settings)
        stopped.audit._stop.set()  # no flush thread, and close() below is not called: as after SIGKILL
        stopped.resources.create(observation("left", "p-b1"), res_type="Observation", res_id="left",
                                 identity=hospital)
        assert [r["interaction"] for r in _journal(stopped)] == ["create"]
        stopped.db.dispose()
        started: list[Server] = []
        threads = [threading.Thread(target=lambda: started.append(Server(settings))) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    try:
        assert len(started) == 2  # both started (and flushed) side by side
        auditor = Identity("a", "Organization/bureau", ("system/AuditEvent.rs",))
        request = started[0].search.parse("AuditEvent", [("entity", "Observation/left")])
        assert len(started[0].search.search(request, identity=auditor).matches) == 1
        assert _journal(started[0]) == []
    finally:
        for started_server in started:
            started_server.close()


def test_a_transaction_leaves_one_event_per_interaction_naming_every_patient_and_resource(as_, server):
    county, auditor = as_("county"), as_("auditor")
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation(f"tx-{p}", f"p-{p}"), "request": {"method": "PUT", "url": f"Observation/tx-{p}"}}
        for p in ("a1", "a2", "b1")
    ] + [{"resource": {**county.get("Patient/p-a1").json(), "gender": "male"},
          "request": {"method": "PUT", "url": "Patient/p-a1"}}]}
    assert county.post("", json=transaction).status_code == 200, "transaction"
    server.audit.flush()
    found = {summary(e) for e in events(auditor, "agent=Organization/hospital&action=C,U")}
    patients = frozenset({"Patient/p-a1", "Patient/p-a2", "Patient/p-b1"})
    observations = frozenset({"Observation/tx-a1", "Observation/tx-a2", "Observation/tx-b1"})
    assert found == {("create", "C", "0", patients, observations),
                     ("update", "U", "0", frozenset({"Patient/p-a1"}), frozenset())}


def test_writes_that_share_a_commit_share_their_events_and_a_failed_one_is_left_out(as_, server):
    """SQLite's group commit puts concurrent writes in one database transaction: one event per
    caller and interaction names them all, and a write that failed inside it is not named."""
    if not server.db.is_sqlite:
        pytest.skip("group commit is SQLite's")
    hospital = identity("county")

    def create(name: str, fail: bool = False) -> None:
        with server.db.write() as conn:
            server.resources.create(observation(name, "p-a1"), res_type="Observation", conn=conn,
                                    res_id=name, identity=hospital)
            if fail:
                raise ValueError(name)

    others = [threading.Thread(target=create, args=("shared-2",)),
              threading.Thread(target=lambda: pytest.raises(ValueError, create, "failed", True))]
    with server.db.write() as conn:  # holds its turn until the two others queue behind it
        server.resources.create(observation("shared-1", "p-a1"), res_type="Observation", conn=conn,
                                res_id="shared-1", identity=hospital)
        for thread in others:
            thread.start()
        while server.db._group_commit._waiting < 2:
            time.sleep(0.01)
    for thread in others:
        thread.join()
    server.audit.flush()
    found = [summary(e) for e in events(as_("auditor"), "patient=Patient/p-a1&subtype=create")]
    assert found == [("create", "C", "0", frozenset({"Patient/p-a1"}),
                      frozenset({"Observation/shared-1", "Observation/shared-2"}))]


def test_audit_events_are_found_by_patient_agent_and_date(as_, server):
    as_("village").get("Patient/p-a1")
    as_("other_village").get("Patient/p-b1")
    as_("township").get("Patient?_count=5")
    server.audit.flush()
    auditor = as_("auditor")
    assert {summary(e)[3] for e in events(auditor, "patient=Patient/p-b1")} == {frozenset({"Patient/p-b1"})}
    assert len(events(auditor, "agent=Organization/th-a")) == 1
    assert len(events(auditor, "entity=Patient/p-a1")) == 2  # the village's read, the township's search
    assert len(events(auditor, "date=ge2020-01-01")) == 3
    assert events(auditor, "date=lt2020-01-01") == []
    client_id = events(auditor, "agent=Organization/vc-b1")[0]["agent"][0]["altId"]
    assert len(events(auditor, f"altid={client_id}")) == 1


def test_only_auditors_read_audit_events(as_, server):
    as_("village").get("Patient/p-a1")
    server.audit.flush()
    county = as_("county")  # system/*.cruds: every type, but a * scope does not cover AuditEvent
    assert county.get("AuditEvent").status_code == 403
    event_id = events(as_("auditor"), "patient=Patient/p-a1")[0]["id"]
    assert county.get(f"AuditEvent/{event_id}").status_code == 403
    assert not {i for i in county.ids("Patient/p-a1/$everything") if i.startswith("AuditEvent/")}
    assert county.ids("Patient?_revinclude=AuditEvent:patient", mode="include") == set()
    assert not {i for i in county.ids("_history?_count=500") if i.startswith("AuditEvent/")}
    assert county.ids(f"Patient?_has:AuditEvent:patient:_id={event_id}") == set()
    assert as_("auditor").get("Patient/p-a1").status_code == 403  # and auditors read only audit


def test_nobody_changes_or_deletes_an_audit_event(as_, server):
    as_("village").get("Patient/p-a1")
    server.audit.flush()
    auditor = as_("auditor")
    event = events(auditor, "patient=Patient/p-a1")[0]
    assert auditor.put(f"AuditEvent/{event['id']}", json=event).status_code == 403
    assert auditor.delete(f"AuditEvent/{event['id']}").status_code == 403
    keeper = Identity("audit-admin", "Organization/bureau", ("system/AuditEvent.cruds",))
    for change in (lambda: server.resources.update("AuditEvent", event["id"], {**event, "outcome": "8"},
                                                   identity=keeper),
                   lambda: server.resources.delete("AuditEvent", event["id"], identity=keeper),
                   lambda: server.resources.delete("AuditEvent", event["id"], identity=SYSTEM)):
        with pytest.raises(Forbidden):
            change()
    assert auditor.get(f"AuditEvent/{event['id']}").json()["outcome"] == "0"


def test_failed_authentication_is_audited(as_, server):
    record_failed_authentication(server.audit, client_id="stolen-laptop", reason="invalid client secret",
                                 address="10.1.2.3")
    server.audit.flush()
    found = events(as_("auditor"), "type=http://dicom.nema.org/resources/ontology/DCM|110114")
    assert len(found) == 1
    event = found[0]
    assert (event["outcome"], event["action"], event["agent"][0]["altId"]) == ("4", "E", "stolen-laptop")
    assert event["agent"][0]["network"]["address"] == "10.1.2.3"
    assert event["outcomeDesc"] == "invalid client secret"
    check_resource(event, "AuditEvent")


def test_a_request_with_a_bad_token_is_audited(app, as_, server):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://testserver") as http:
        assert http.get("/fhir/Patient/p-a1", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    server.audit.flush()
    found = events(as_("auditor"), "type=http://dicom.nema.org/resources/ontology/DCM|110114")
    assert [(e["outcome"], e["subtype"][0]["code"]) for e in found] == [("4", "110122")]


def test_unrestricted_clients_are_audited_but_not_the_servers_own_work(fhir, as_, server, app):
    """The suite's client is bound to no organisation, yet it is an authenticated agent: its
    reads are audited. The server's own jobs (SYSTEM) have no agent to record."""
    assert fhir.get("Patient/p-a1").status_code == 200
    server.resources.read("Patient", "p-a2", identity=SYSTEM)
    server.audit.flush()
    [event] = events(as_("auditor"), "patient=Patient/p-a1")
    suite_clients = {c.client_id for c in app.state.authentication.clients.all() if c.name == "test suite"}
    assert [a["who"]["identifier"]["value"] for a in event["agent"]] in ([c] for c in suite_clients)
    assert events(as_("auditor"), "patient=Patient/p-a2") == []


def test_queued_read_events_are_written_at_shutdown(settings, county):
    """Server.close() writes what is still queued (what a SIGKILL would lose)."""
    from fhir_server.server import Server

    other = Server(settings)
    village = Identity("v", "Organization/vc-a1", ("user/*.rs",))
    other.audit.read(village, "read", [("Patient", "p-a1")])
    other.close()
    reader = Server(settings)
    try:
        auditor = Identity("a", "Organization/bureau", ("system/AuditEvent.rs",))
        request = reader.search.parse("AuditEvent", [("patient", "Patient/p-a1")])
        assert len(reader.search.search(request, identity=auditor).matches) == 1
    finally:
        reader.close()


def test_no_resident_id_or_name_reaches_the_logs(as_, server, caplog):
    caplog.set_level(logging.INFO)  # what `python -m fhir_server serve` configures
    caplog.set_level(logging.DEBUG, logger="fhir_server")  # and everything of ours
    village, county = as_("village"), as_("county")
    number, family, given = PATIENTS["p-a1"][3], PATIENTS["p-a1"][1], PATIENTS["p-a1"][2]
    village.get(f"Patient?identifier={RESIDENT_ID}|{number}&name={family}{given}")
    village.get(f"Observation?subject:Patient.identifier={RESIDENT_ID}|{PATIENTS['p-b1'][3]}")
    village.post("Patient", json={k: v for k, v in patient("p-b1").items() if k != "id"})  # another clinic
    village.put("Patient/p-b1", json=patient("p-b1"))
    county.put("Patient/p-a1", json={**patient("p-a1"), "birthDate": "not a date"})  # invalid
    county.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient("p-a1"), "request": {"method": "PUT", "url": "Patient/p-a1"}},
        {"resource": {"resourceType": "Patient", "name": [{"text": "赵六"}], "birthDate": "x"},
         "request": {"method": "POST", "url": "Patient"}}]})
    server.audit.flush()
    # the server's records (httpx logs the test client's own request lines)
    records = [r for r in caplog.records if r.name != "httpx"]
    text = "".join(f"{r.getMessage()} {r.exc_text or ''}" for r in records)
    assert records, "nothing was logged: the test would prove nothing"
    for pid, (_, fam, giv, resident) in PATIENTS.items():
        assert resident not in text, pid
        assert fam + giv not in text, pid
    assert "赵六" not in text
