"""Known ids: the pipeline looks the conditional entries up before the write transaction, and
the outcome is the one the conditional transaction would have had."""

from __future__ import annotations

import copy
import threading

from hl7_inbound_messages import RESULTS, oru_bytes, resident_id

from adapters.hl7v2 import pipeline as pipeline_module
from adapters.hl7v2.known_ids import with_known_ids
from adapters.hl7v2.pipeline import InboundPipeline, sending_system
from adapters.hl7v2.translate import translate
from fhir_server.auth.identity import SYSTEM

RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"


def read(server, reference: str) -> dict:
    rtype, rid = reference.split("/")[:2]
    return server.resources.read(rtype, rid, identity=SYSTEM)


def ids(outcome, rtype: str) -> set[str]:
    return {r.split("/")[1] for r in outcome.resources if r.startswith(f"{rtype}/")}


def patients_with(server, value: str) -> list[str]:
    with server.db.read() as conn:
        return server.search.find_ids(conn, "Patient", [("identifier", f"{RESIDENT_ID}|{value}")], SYSTEM)


def test_a_stored_report_is_written_by_id_and_the_stored_institution_referred_to(server):
    first = InboundPipeline(server).receive(oru_bytes("K-1", order="ORD-K"))
    assert first.status == "processed", first.problems
    translation = translate(oru_bytes("K-2", order="ORD-K"), server)
    known = with_known_ids(server, translation.bundle, sending_system(translation.header))

    requests = [e["request"] for e in known.bundle["entry"]]
    assert not any("ifNoneExist" in r or "?" in r["url"] for r in requests)
    assert {r["url"].split("/")[1] for r in requests if r["url"].startswith("Observation/")} == ids(first, "Observation")
    assert [r["url"] for r in requests if r["url"].startswith("DiagnosticReport")] == \
        [f"DiagnosticReport/{next(iter(ids(first, 'DiagnosticReport')))}"]
    [organization] = [r for r in first.resources if r.startswith("Organization/")]
    assert known.existing == [organization]  # not created again, named as it is stored
    assert not any(e["resource"]["resourceType"] == "Organization" for e in known.bundle["entry"])
    report = next(e["resource"] for e in known.bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert report["performer"] == [{"reference": organization.rsplit("/_history", 1)[0]}]
    assert translation.bundle["entry"][0]["request"].get("ifNoneExist")  # the translation is left as it was


def test_a_correction_through_the_pipeline_replaces_the_results_and_names_them_in_its_provenance(server):
    pipeline = InboundPipeline(server)
    first = pipeline.receive(oru_bytes("K-3", order="ORD-C"))
    corrected = [(code, name, "6.0" if code == "GLU" else value, unit, reference, flag)
                 for code, name, value, unit, reference, flag in RESULTS]
    second = pipeline.receive(oru_bytes("K-4", order="ORD-C", results=corrected))
    assert second.status == "processed", second.problems
    assert ids(second, "Observation") == ids(first, "Observation")
    assert ids(second, "Organization") == ids(first, "Organization")
    assert ids(second, "DiagnosticReport") == ids(first, "DiagnosticReport")
    glucose = next(o for o in (read(server, r) for r in second.resources if r.startswith("Observation/"))
                   if o["valueQuantity"]["value"] == 6.0)
    assert glucose["meta"]["versionId"] == "2"
    [provenance] = [r for r in second.resources if r.startswith("Provenance/")]
    targets = {t["reference"] for t in read(server, provenance)["target"]}
    assert targets == {"/".join(r.split("/")[:2]) for r in second.resources if not r.startswith("Provenance/")}


def test_a_patient_another_sender_creates_meanwhile_is_found_on_the_retry(server, monkeypatch):
    """Between the look-up and the write another message creates the same patient: the write
    sees the twin, rolls back and is done again, and refers to the other's patient."""
    attempts = []

    def racing(server_, bundle, identity):
        known = with_known_ids(server_, bundle, identity)
        attempts.append(known)
        if len(attempts) == 1:
            patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
            server.resources.create(copy.deepcopy(patient), identity=SYSTEM, res_id="other-senders-patient")
        return known

    monkeypatch.setattr(pipeline_module, "with_known_ids", racing)
    outcome = InboundPipeline(server).receive(oru_bytes("K-RACE", patient=42))
    assert outcome.status == "processed", outcome.problems
    assert len(attempts) == 2
    assert patients_with(server, resident_id(42)) == ["other-senders-patient"]
    assert ids(outcome, "Patient") == {"other-senders-patient"}
    report = read(server, next(r for r in outcome.resources if r.startswith("DiagnosticReport/")))
    assert report["subject"] == {"reference": "Patient/other-senders-patient"}


def test_an_identifier_two_stored_results_share_is_ae_and_nothing_is_written(server):
    pipeline = InboundPipeline(server)
    first = pipeline.receive(oru_bytes("K-5", order="ORD-2X"))
    observation = read(server, next(r for r in first.resources if r.startswith("Observation/")))
    twin = {k: v for k, v in observation.items() if k not in ("id", "meta")}
    server.resources.create(twin, identity=SYSTEM)

    outcome = pipeline.receive(oru_bytes("K-6", order="ORD-2X"))
    assert outcome.status == "error" and outcome.ack_code == "AE"
    assert any("match several Observation resources" in p.text for p in outcome.problems)
    assert pipeline.store.get(outcome.record_id).resources == []
    for reference in first.resources:  # nothing written again
        assert read(server, reference)["meta"]["versionId"] == reference.rsplit("/", 1)[1]


def test_a_resource_the_bundle_names_twice_is_written_once_and_other_criteria_are_left_to_the_transaction(server):
    system = "https://example.org/sid/order"
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "glucose"},
                   "identifier": [{"system": system, "value": "O-1"}]}
    organization = {"resourceType": "Organization", "name": "Lab", "identifier": [{"system": system, "value": "L"}]}
    entries = [
        {"fullUrl": "urn:uuid:org-1", "resource": organization,
         "request": {"method": "POST", "url": "Organization", "ifNoneExist": f"identifier={system}|L"}},
        {"fullUrl": "urn:uuid:org-2", "resource": organization,
         "request": {"method": "POST", "url": "Organization", "ifNoneExist": f"identifier={system}|L"}},
        *({"fullUrl": f"urn:uuid:obs-{n}", "resource": {**observation, "performer": [{"reference": "urn:uuid:org-2"}]},
           "request": {"method": "PUT", "url": f"Observation?identifier={system}|O-1"}} for n in (1, 2)),
        {"fullUrl": "urn:uuid:obs-3", "resource": observation,
         "request": {"method": "PUT", "url": "Observation?code=glucose"}},
    ]
    known = with_known_ids(server, {"resourceType": "Bundle", "type": "transaction", "entry": entries}, SYSTEM)

    first, *observations = known.bundle["entry"]
    assert first["request"] == {"method": "POST", "url": "Organization"}
    assert known.created == [("Organization", f"identifier={system}|L")]
    [url] = {e["request"]["url"] for e in observations[:2]}  # both PUTs write one new resource
    assert url.startswith("Observation/") and observations[0]["resource"]["id"] == url.split("/")[1]
    assert observations[0]["resource"]["performer"] == [{"reference": "urn:uuid:org-1"}]
    assert observations[2]["request"]["url"] == "Observation?code=glucose"


def test_two_senders_creating_one_patient_at_once_make_one_patient(server, monkeypatch):
    """Two senders' messages about a new patient, their write transactions open at the same time
    (side by side on PostgreSQL; one after the other on SQLite): the second to check sees the
    first's patient once the first committed, is done again, and refers to it."""
    real_check = pipeline_module.check_created
    second_checking = threading.Event()
    order: list[str] = []
    guard = threading.Lock()

    def check(server_, conn, known, identity):
        with guard:
            order.append(threading.current_thread().name)
            first = len(order) == 1
        if first:
            real_check(server_, conn, known, identity)
            second_checking.wait(3)  # stays open while the other transaction reaches its check
        else:
            second_checking.set()
            real_check(server_, conn, known, identity)

    monkeypatch.setattr(pipeline_module, "check_created", check)
    pipeline = InboundPipeline(server)
    outcomes = {}

    def send(facility: str) -> None:
        outcomes[facility] = pipeline.receive(oru_bytes(f"TWIN-{facility}", sender=("LIS", facility), patient=77))

    threads = [threading.Thread(target=send, args=(f,), name=f) for f in ("县人民医院", "凤桥镇卫生院")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [o.status for o in outcomes.values()] == ["processed", "processed"], outcomes
    [patient] = patients_with(server, resident_id(77))
    reports = [read(server, next(r for r in o.resources if r.startswith("DiagnosticReport/")))
               for o in outcomes.values()]
    assert [r["subject"]["reference"] for r in reports] == [f"Patient/{patient}"] * 2
