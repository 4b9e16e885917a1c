"""Only the senders ``mappings/hl7v2/senders.csv`` accepts: with ``*,*,accepted,no`` a sender
without its own ``yes`` row is refused (AR, 103 at MSH-3), nothing is written, the message is
kept as ``refused``, and it is replayed once the sender is accepted."""

from __future__ import annotations

from hl7_inbound_messages import oru_bytes
from test_pipeline import fields, resource_count

from adapters.hl7v2.pipeline import InboundPipeline
from adapters.hl7v2.replay import replay_records

KNOWN = ("LIS", "县人民医院")
STRANGER = ("LIS", "陌生卫生院")


def accept(mappings, application: str, facility: str, value: str) -> None:
    with (mappings / "senders.csv").open("a", encoding="utf-8") as table:
        table.write(f"{application},{facility},accepted,{value},\n")


def test_every_sender_is_accepted_by_default(server):
    outcome = InboundPipeline(server).receive(oru_bytes("ANY-1", sender=STRANGER))
    assert outcome.status == "processed"


def test_with_a_closed_list_only_listed_senders_are_taken_and_the_others_kept_for_replay(server, mappings):
    accept(mappings, "*", "*", "no")
    accept(mappings, *KNOWN, "yes")
    pipeline = InboundPipeline(server)

    assert pipeline.receive(oru_bytes("KNOWN-1", sender=KNOWN)).status == "processed"
    before = resource_count(server)
    refused = pipeline.receive(oru_bytes("STRANGER-1", sender=STRANGER))
    assert refused.status == "refused"
    ack = fields(refused.ack)
    assert ack["MSA"][0][1:3] == ["AR", "STRANGER-1"]
    [err] = ack["ERR"]
    assert err[2] == "MSH^1^3" and err[3].startswith("103^")  # v2.5: ERR-2 location, ERR-3 code
    assert "陌生卫生院" in err[8] and "not an accepted sender" in err[8]
    assert resource_count(server) == before  # nothing written
    record = pipeline.store.get(refused.record_id)
    assert (record.status, record.resources) == ("refused", [])

    accept(mappings, *STRANGER, "yes")  # the county accepts the new township LIS
    [replayed] = replay_records(pipeline, [refused.record_id])
    assert replayed.outcome.status == "processed"
    assert resource_count(server) > before


def test_a_sender_can_be_shut_out_by_facility(server, mappings):
    accept(mappings, "*", STRANGER[1], "no")
    pipeline = InboundPipeline(server)
    assert pipeline.receive(oru_bytes("S-1", sender=STRANGER)).status == "refused"
    assert pipeline.receive(oru_bytes("S-2", sender=("HIS", STRANGER[1]))).status == "refused"
    assert pipeline.receive(oru_bytes("K-1", sender=KNOWN)).status == "processed"
