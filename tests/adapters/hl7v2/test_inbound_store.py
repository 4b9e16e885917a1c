"""The inbound store: raw bytes kept, duplicates pointing at their original, outcomes."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from adapters.hl7v2.inbound_store import Delivery, InboundStore, hl7_inbound

RAW = "MSH|^~\\&|LIS|县人民医院|FHIR|CHN|20260512101500||ORU^R01|MSG1|P|2.5\rPID|1||ZY001||王^秀英\r".encode()


def receive(store: InboundStore, raw: bytes = RAW, control_id: str | None = "MSG1", sender: str = "LIS|县人民医院"):
    return store.receive(Delivery(sender, control_id, "ORU^R01", "2.5", "utf-8", "test", raw))


def test_a_new_message_is_stored_as_received_with_its_raw_bytes(server):
    store = InboundStore(server.db)
    received = receive(store)
    assert received.original is None
    record = store.get(received.record_id)
    assert record.raw == RAW
    assert (record.sender, record.control_id, record.message_type, record.version, record.charset) == (
        "LIS|县人民医院", "MSG1", "ORU^R01", "2.5", "utf-8")
    assert record.status == "received"
    assert record.ack is None and record.attempts == 0
    assert record.source == "test"


def test_the_outcome_is_recorded_with_ack_problems_and_resources(server):
    store = InboundStore(server.db)
    record_id = receive(store).record_id
    store.finish(record_id, status="processed", ack=b"MSH|...\rMSA|AA|MSG1\r", ack_code="AA",
                 problems=[{"segment": "OBX", "sequence": 1, "field": 3, "component": None, "code": "103",
                            "severity": "W", "text": "unmapped"}],
                 resources=["Observation/o1/_history/1"])
    record = store.get(record_id)
    assert record.status == "processed"
    assert record.ack_code == "AA" and record.ack.endswith(b"MSA|AA|MSG1\r")
    assert record.problems[0]["text"] == "unmapped"
    assert record.resources == ["Observation/o1/_history/1"]
    assert record.attempts == 1 and record.processed_at is not None


def test_a_redelivery_of_a_finished_message_is_a_duplicate_of_it(server):
    store = InboundStore(server.db)
    first = receive(store).record_id
    store.finish(first, status="error", ack=b"ACK-AE", ack_code="AE", problems=[], resources=[])
    again = receive(store)
    assert again.original is not None and again.original.id == first
    assert again.record_id != first
    duplicate = store.get(again.record_id)
    assert duplicate.status == "duplicate"
    assert duplicate.duplicate_of == first
    assert duplicate.ack == b"ACK-AE"  # answered with the original ACK
    assert duplicate.raw == RAW  # the redelivery is kept too
    assert store.get(first).status == "error"  # the original is untouched


def test_the_same_control_id_from_another_sender_is_a_new_message(server):
    store = InboundStore(server.db)
    first = receive(store).record_id
    store.finish(first, status="processed", ack=b"A", ack_code="AA")
    other = receive(store, sender="LIS|柳冲镇卫生院")
    assert other.original is None and other.record_id != first


def test_a_message_stored_but_never_finished_is_taken_up_again_by_its_redelivery(server):
    store = InboundStore(server.db)
    first = receive(store).record_id  # the process stopped before its outcome was recorded
    again = receive(store, raw=RAW.replace(b"ZY001", b"ZY002"))
    assert again.original is None and again.record_id == first
    assert store.get(first).raw.count(b"ZY002") == 1
    assert store.counts() == {"received": 1}


def test_two_originals_of_one_sender_and_control_id_cannot_exist(server):
    store = InboundStore(server.db)
    receive(store)
    with pytest.raises(IntegrityError), server.db.write() as conn:
        conn.execute(insert(hl7_inbound).values(
            sender="LIS|县人民医院", control_id="MSG1", received_at=datetime(2026, 5, 1), status="received",
            raw=b"x", attempts=0))


def test_unreadable_messages_have_no_control_id_and_never_collide(server):
    store = InboundStore(server.db)
    a = receive(store, raw=b"garbage", control_id=None, sender="")
    b = receive(store, raw=b"garbage", control_id=None, sender="")
    assert a.record_id != b.record_id and a.original is None and b.original is None


def test_find_filters_and_orders_oldest_first(server):
    store = InboundStore(server.db)
    ids = [receive(store, control_id=f"M{i}").record_id for i in range(3)]
    store.finish(ids[1], status="error", ack=None, ack_code=None)
    assert [r.id for r in store.find()] == ids
    assert [r.id for r in store.find(status="error")] == [ids[1]]
    assert [r.id for r in store.find(status=["received"], after_id=ids[0])] == [ids[2]]
    assert [r.id for r in store.find(control_id="M2")] == [ids[2]]
    assert store.counts() == {"received": 2, "error": 1}
    detail = store.get(ids[0]).detail()
    assert detail["message"].startswith("MSH|^~\\&|LIS|县人民医院")
    assert detail["status"] == "received" and detail["ack"] is None
