"""The inbound pipeline with the real translation: stored first, written with a Provenance and
the record in one transaction, ACKed after the commit, duplicates and failures change nothing."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hl7_inbound_messages import RESULTS, oru_bytes, unsupported
from sqlalchemy import func, select

from adapters.hl7v2.contract import Translation
from adapters.hl7v2.pipeline import InboundChannel, InboundPipeline, NotReplayable
from adapters.hl7v2.translate import translate
from fhir_server.auth.identity import SYSTEM
from fhir_server.storage.schema import resource


def fields(ack: bytes, codec: str = "utf-8") -> dict[str, list[list[str]]]:
    found: dict[str, list[list[str]]] = {}
    for line in ack.decode(codec).rstrip("\r").split("\r"):
        found.setdefault(line[:3], []).append(line.split("|"))
    return found


def resource_count(server, rtype: str | None = None) -> int:
    """Resources stored now, once the audit trail has written what it holds (its thread writes
    the AuditEvents of earlier writes up to a second later, which would land between counts)."""
    server.audit.flush()
    query = select(func.count()).select_from(resource).where(resource.c.deleted.is_(False))
    if rtype:
        query = query.where(resource.c.res_type == rtype)
    with server.db.read() as conn:
        return conn.execute(query).scalar_one()


def read(server, reference: str) -> dict:
    rtype, rid = reference.split("/")[:2]
    return server.resources.read(rtype, rid, identity=SYSTEM)


@pytest.fixture
def pipeline(server) -> InboundPipeline:
    return InboundPipeline(server)


def test_an_oru_is_stored_written_with_its_provenance_and_acknowledged_aa(server, pipeline):
    raw = oru_bytes("ORU-1")
    outcome = pipeline.receive(raw, source="test")
    assert outcome.status == "processed", outcome.problems
    ack = fields(outcome.ack)
    assert ack["MSA"][0][1:3] == ["AA", "ORU-1"]
    assert ack["MSH"][0][2:6] == ["FHIR", "县卫健局平台", "LIS", "县人民医院"]

    record = pipeline.store.get(outcome.record_id)
    assert record.raw == raw
    assert (record.status, record.ack_code, record.ack) == ("processed", "AA", outcome.ack)
    assert record.sender == "LIS|县人民医院" and record.control_id == "ORU-1"
    assert record.message_type == "ORU^R01" and record.version == "2.5" and record.charset == "utf-8"
    assert record.resources == outcome.resources and record.attempts == 1

    types = [r.split("/")[0] for r in record.resources]
    assert types.count("Observation") == len(RESULTS)
    assert {"Patient", "DiagnosticReport", "Provenance"} <= set(types)
    report = read(server, next(r for r in record.resources if r.startswith("DiagnosticReport/")))
    assert len(report["result"]) == len(RESULTS)

    [provenance_ref] = [r for r in record.resources if r.startswith("Provenance/")]
    provenance = read(server, provenance_ref)
    targets = {t["reference"] for t in provenance["target"]}
    written = {"/".join(r.split("/")[:2]) for r in record.resources if not r.startswith("Provenance/")}
    assert targets == written  # every resource written is a target
    [entity] = provenance["entity"]
    assert entity["role"] == "source"
    assert entity["what"]["identifier"]["value"] == "LIS|县人民医院|ORU-1"
    assert entity["what"]["display"] == "HL7 v2 ORU^R01 ORU-1 from LIS @ 县人民医院"
    assert provenance["agent"][0]["who"]["identifier"]["value"] == "LIS|县人民医院"
    assert provenance["recorded"]


def test_a_redelivered_message_gets_the_original_ack_and_changes_nothing(server, pipeline):
    first = pipeline.receive(oru_bytes("ORU-2"))
    count = resource_count(server)
    again = pipeline.receive(oru_bytes("ORU-2"))
    assert again.status == "duplicate"
    assert again.ack == first.ack  # the original ACK, byte for byte
    assert again.duplicate_of == first.record_id
    assert resource_count(server) == count
    duplicate = pipeline.store.get(again.record_id)
    assert (duplicate.status, duplicate.duplicate_of) == ("duplicate", first.record_id)
    assert pipeline.store.get(first.record_id).attempts == 1


def test_an_unsupported_type_is_refused_with_ar_kept_and_nothing_written(server, pipeline):
    before = resource_count(server)
    outcome = pipeline.receive(unsupported("QRY-1"))
    assert outcome.status == "refused"
    ack = fields(outcome.ack)
    assert ack["MSA"][0][1:3] == ["AR", "QRY-1"]
    assert ack["MSH"][0][11] == "2.4"  # the sender's version
    codes = [e[1].split("~")[0].split("^")[3].split("&")[0] for e in ack["ERR"]]  # 2.4: ERR-1 (ELD)
    assert codes[0] in ("200", "201")
    record = pipeline.store.get(outcome.record_id)
    assert record.status == "refused" and record.problems and record.resources == []
    assert resource_count(server) == before


def test_content_the_translation_cannot_map_is_ae_with_its_err_and_nothing_written(server, pipeline):
    raw = oru_bytes("ORU-AE", results=[("GLU", "空腹血糖", "3.9^6.1", "mmol/L", "", "N")]).replace(b"|NM|", b"|NR|")
    outcome = pipeline.receive(raw)
    assert outcome.status == "error"
    ack = fields(outcome.ack)
    assert ack["MSA"][0][1:3] == ["AE", "ORU-AE"]
    [err] = [e for e in ack["ERR"] if e[4] == "E"]
    assert err[2] == "OBX^1^2"  # the segment and field that could not be understood
    assert err[3] == "102^Data type error^HL70357"
    assert "'NR'" in err[8]
    assert resource_count(server) == 0
    record = pipeline.store.get(outcome.record_id)
    assert (record.status, record.ack, record.resources) == ("error", outcome.ack, [])


def test_bytes_without_an_msh_are_kept_and_answered_with_a_nak(server, pipeline):
    outcome = pipeline.receive(b"\x00\x01 this is not HL7", source="test")
    assert outcome.status == "refused"
    assert fields(outcome.ack)["MSA"][0][1] == "AR"
    record = pipeline.store.get(outcome.record_id)
    assert record.raw == b"\x00\x01 this is not HL7" and record.status == "refused"


def test_a_gb18030_message_is_acknowledged_in_gb18030(server, pipeline):
    raw = oru_bytes("ORU-GB", charset="GB18030", patient=7, family="欧阳", given="娜娜")
    outcome = pipeline.receive(raw)
    assert outcome.status == "processed", outcome.problems
    assert "县人民医院".encode("gb18030") in outcome.ack
    ack = fields(outcome.ack, "gb18030")
    assert ack["MSH"][0][17] == "GB18030"
    assert ack["MSH"][0][4:6] == ["LIS", "县人民医院"]
    patient = read(server, next(r for r in outcome.resources if r.startswith("Patient/")))
    assert "欧阳" in str(patient["name"])


def test_enhanced_mode_gets_a_commit_ack_when_no_application_ack_is_asked(server, pipeline):
    outcome = pipeline.receive(oru_bytes("ORU-CA", ack_modes=("AL", "NE")))
    assert outcome.status == "processed"
    assert fields(outcome.ack)["MSA"][0][1:3] == ["CA", "ORU-CA"]
    assert fields(outcome.ack)["MSH"][0][14:16] == ["NE", "NE"]
    silent = pipeline.receive(oru_bytes("ORU-NE", ack_modes=("NE", "NE")))
    assert silent.status == "processed" and silent.ack is None  # the sender asked for no ACK


# -- failures: nothing written, the reason kept, replay after the fix ----------------------------

def spoil_observation(raw: bytes, server) -> Translation:
    """The real translation with one Observation spoiled (its required code missing), so that
    the server refuses the write, as it would a resource a faulty mapping table produced."""
    translation = translate(raw, server)
    for entry in translation.bundle["entry"]:
        if entry["resource"]["resourceType"] == "Observation":
            del entry["resource"]["code"]
            break
    return translation


def test_a_write_the_server_refuses_is_ae_with_nothing_written_then_replayed_after_the_fix(server):
    broken = InboundPipeline(server, translate=spoil_observation)
    before = resource_count(server)
    outcome = broken.receive(oru_bytes("ORU-BAD"))
    assert outcome.status == "error"
    ack = fields(outcome.ack)
    assert ack["MSA"][0][1:3] == ["AE", "ORU-BAD"]
    assert ack["ERR"][-1][3] == "207^Application internal error^HL70357"
    assert "refused the mapped resources" in ack["ERR"][-1][8]
    assert resource_count(server) == before  # not the Patient, not the report, no Provenance
    record = broken.store.get(outcome.record_id)
    assert record.status == "error" and record.resources == [] and record.problems

    fixed = InboundPipeline(server)  # the mapping is fixed
    replayed = fixed.replay(outcome.record_id)
    assert replayed.status == "processed"
    record = fixed.store.get(outcome.record_id)
    assert record.status == "processed" and record.attempts == 2
    assert record.resources == replayed.resources and len(record.resources) >= len(RESULTS) + 3
    assert fields(record.ack)["MSA"][0][1] == "AA"
    # a redelivery now gets the outcome after the replay
    assert InboundPipeline(server).receive(oru_bytes("ORU-BAD")).ack == record.ack
    with pytest.raises(NotReplayable):
        fixed.replay(outcome.record_id)  # processed: never twice


def test_an_internal_error_is_ae_207_and_the_message_kept(server):
    def failing(raw: bytes, server) -> Translation:
        raise KeyError("a mapping table row is missing")

    outcome = InboundPipeline(server, translate=failing).receive(oru_bytes("ORU-CRASH"))
    assert outcome.status == "error"
    [err] = fields(outcome.ack)["ERR"]
    assert err[3].startswith("207^") and "Internal error" in err[8]
    assert resource_count(server, "Observation") == 0
    assert InboundPipeline(server).replay(outcome.record_id).status == "processed"


# -- ordering -------------------------------------------------------------------------------------

class Watch:
    """Wraps the real translation to record which message of which sender is in hand when."""

    def __init__(self):
        self.lock = threading.Lock()
        self.busy: dict[str, int] = {}
        self.overlap_same_sender = 0
        self.order: dict[str, list[str]] = {}

    def __call__(self, raw: bytes, server) -> Translation:
        translation = translate(raw, server)
        sender = translation.header.sender
        with self.lock:
            self.busy[sender] = self.busy.get(sender, 0) + 1
            if self.busy[sender] > 1:
                self.overlap_same_sender += 1
            self.order.setdefault(sender, []).append(translation.header.control_id)
        time.sleep(0.005)  # widen the window in which a second message of the sender could slip in
        with self.lock:
            self.busy[sender] -= 1
        return translation


def test_messages_of_one_sender_are_applied_one_at_a_time_in_arrival_order(server):
    watch = Watch()
    channel = InboundChannel(InboundPipeline(server, translate=watch), threads=6)
    senders = [("LIS", "县人民医院"), ("LIS", "柳冲镇卫生院")]
    messages = [(oru_bytes(f"{s[1]}-{n:02d}", sender=s, patient=n), s) for n in range(12) for s in senders]

    async def deliver_all():
        return await asyncio.gather(*(channel.handle(raw, f"peer-{i}") for i, (raw, _) in enumerate(messages)))

    try:
        acks = asyncio.run(deliver_all())
    finally:
        channel.close()
    assert all(b"MSA|AA|" in ack for ack in acks)
    assert watch.overlap_same_sender == 0
    for sender in senders:
        expected = [f"{sender[1]}-{n:02d}" for n in range(12)]
        assert watch.order[f"{sender[0]}|{sender[1]}"] == expected
        records = InboundPipeline(server).store.find(sender=f"{sender[0]}|{sender[1]}")
        assert [r.control_id for r in sorted(records, key=lambda r: r.processed_at)] == expected


def test_the_resources_are_written_as_the_sending_system_and_audited(server, auditor):
    """Adapters write with the identity of the sending system: each resource written leaves an
    AuditEvent naming it (MSH-3|MSH-4)."""
    outcome = InboundPipeline(server).receive(oru_bytes("AUDIT-W1"))
    assert outcome.status == "processed", outcome.problems
    patient = next(r for r in outcome.resources if r.startswith("Patient/")).rsplit("/_history", 1)[0]
    server.audit.flush()  # the writes' records become AuditEvents
    bundle = auditor.get("/fhir/AuditEvent", params={"patient": patient, "_count": "100"}).json()
    agents = {a["who"]["identifier"]["value"] for e in bundle["entry"] for a in e["resource"]["agent"]
              if "identifier" in a.get("who", {})}
    assert agents == {"hl7v2:LIS|县人民医院"}
    # every resource that is patient data (all but the lab Organization), Provenance included
    written = {r.rsplit("/_history", 1)[0] for r in outcome.resources if not r.startswith("Organization/")}
    audited = {x["what"]["reference"] for e in bundle["entry"] for x in e["resource"]["entity"]}
    assert audited == written
    assert len(bundle["entry"]) == 1  # one transaction, one interaction: one event
