"""The spool: a new message waits on disk until its row is written with its outcome; the
spool of a process that died is read back when a listener starts, and nothing is lost."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

from hl7_inbound_messages import oru_bytes

from adapters.hl7v2.inbound_store import Delivery
from adapters.hl7v2.pipeline import InboundPipeline
from adapters.hl7v2.replay import finish_interrupted
from adapters.hl7v2.spool import Spool, recover

ROOT = Path(__file__).resolve().parents[3]

# A process that takes a message and dies while translating it (before any row is written).
DIES_IN_HAND = """
import os, sys
from adapters.hl7v2.pipeline import InboundPipeline
from fhir_server.server import Server
from fhir_server.settings import Settings

server = Server(Settings(database_url=sys.argv[1], hl7_spool_dir=sys.argv[2]))
InboundPipeline(server, translate=lambda raw, srv: os._exit(9)).receive(sys.stdin.buffer.read())
"""


def delivery(control_id: str | None, raw: bytes = b"MSH|^~\\&|LIS|X\r", sender: str = "LIS|县人民医院") -> Delivery:
    return Delivery(sender, control_id, "ORU^R01", "2.5", "utf-8", "test", raw)


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.spool"))


def test_a_message_in_hand_when_its_process_dies_is_written_when_a_listener_starts(server):
    spool_dir = server.settings.hl7_spool_dir
    raw = oru_bytes("DIED-1")
    died = subprocess.run(
        [sys.executable, "-c", DIES_IN_HAND, server.settings.database_url, str(spool_dir)], input=raw,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=120)
    assert died.returncode == 9, died.stderr.decode()

    pipeline = InboundPipeline(server)
    assert pipeline.store.find(control_id="DIED-1") == []  # no row: it was only in the spool
    assert len(spool_files(spool_dir)) == 1

    [result] = finish_interrupted(pipeline)
    assert result.outcome.status == "processed", result.outcome.problems
    record = pipeline.store.get(result.record_id)
    assert (record.control_id, record.raw, record.status, record.ack_code) == ("DIED-1", raw, "processed", "AA")
    assert any(r.startswith("DiagnosticReport/") for r in record.resources)
    assert spool_files(spool_dir) == []
    # the sender, never ACKed, sends it again: answered as the duplicate it now is
    assert pipeline.receive(raw).status == "duplicate"
    assert finish_interrupted(pipeline) == []


def test_the_spool_of_a_live_process_is_left_alone_until_it_stops(server, tmp_path):
    store = InboundPipeline(server).store
    live = Spool(tmp_path)
    kept = delivery("LIVE-1")
    live.append(kept)  # in hand, not released
    assert recover(tmp_path, store) == 0
    assert store.find(control_id="LIVE-1") == [] and len(spool_files(tmp_path)) == 1

    live.close()  # the process goes with the delivery still in hand: its file stays, unlocked
    assert recover(tmp_path, store) == 1
    [record] = store.find(control_id="LIVE-1")
    assert (record.status, record.raw, record.source) == ("received", kept.raw, "test")
    assert record.received_at == kept.received_at
    assert spool_files(tmp_path) == []


def test_recovery_skips_deliveries_with_rows_and_keeps_what_comes_before_a_torn_record(server, tmp_path, caplog):
    store = InboundPipeline(server).store
    spool = Spool(tmp_path)
    finished, unfinished, nameless = delivery("DONE-1"), delivery("LEFT-1"), delivery(None, raw=b"garbage")
    for each in (finished, unfinished, nameless):
        spool.append(each)
    store.finish(finished, status="processed", ack=b"ACK", ack_code="AA")  # its row was committed
    store.finish(delivery(None, raw=b"other"), status="refused", ack=None, ack_code="AR")  # another nameless one
    spool.close()
    [path] = spool_files(tmp_path)
    whole = path.read_bytes()
    with path.open("ab") as torn:  # the first half of a record: the write of a dying machine
        torn.write(whole[: len(whole) // 6])

    with caplog.at_level(logging.WARNING, logger="adapters.hl7v2.spool"):
        assert recover(tmp_path, store) == 2
    assert f"spool {path}" in caplog.text and "cut short" in caplog.text
    assert [r.status for r in store.find(control_id="DONE-1")] == ["processed"]  # not kept twice
    assert [r.status for r in store.find(control_id="LEFT-1")] == ["received"]
    assert sorted((r.raw, r.status) for r in store.find(sender="LIS|县人民医院") if r.control_id is None) == [
        (b"garbage", "received"), (b"other", "refused")]
    assert recover(tmp_path, store) == 0 and spool_files(tmp_path) == []


def test_a_damaged_record_keeps_its_file_for_a_person_to_look_at(server, tmp_path, caplog):
    store = InboundPipeline(server).store
    spool = Spool(tmp_path)
    for control_id in ("BEFORE-1", "DAMAGED-1", "AFTER-1"):
        spool.append(delivery(control_id))
    spool.close()
    [path] = spool_files(tmp_path)
    data = bytearray(path.read_bytes())
    second = data.index(b"HL7S", 4)
    data[second:second + 4] = b"XXXX"  # the second record's start is overwritten
    path.write_bytes(bytes(data))

    with caplog.at_level(logging.ERROR, logger="adapters.hl7v2.spool"):
        assert recover(tmp_path, store) == 1
    assert "no record starts at byte" in caplog.text
    assert [r.control_id for r in store.find()] == ["BEFORE-1"]
    assert spool_files(tmp_path) == [] and path.with_suffix(".damaged").read_bytes() == bytes(data)


def test_a_file_goes_once_everything_in_it_has_its_row(tmp_path):
    spool = Spool(tmp_path, rotate_bytes=10)  # every record fills a file
    first = spool.append(delivery("A"))
    second = spool.append(delivery("B"))  # a new file: the first still holds A
    assert len(spool_files(tmp_path)) == 2
    spool.release(first)
    assert len(spool_files(tmp_path)) == 1
    spool.release(second)  # the current file stays open for the next delivery
    assert len(spool_files(tmp_path)) == 1
    spool.close()
    assert spool_files(tmp_path) == []


def test_a_server_that_closes_leaves_no_spool_file(settings, tmp_path):
    from adapters.hl7v2.pipeline import pipeline_for
    from fhir_server.server import Server

    own = Server(settings.model_copy(update={"hl7_spool_dir": tmp_path}))
    try:
        assert pipeline_for(own).receive(oru_bytes("CLOSE-1", patient=11)).status == "processed"
        assert len(spool_files(tmp_path)) == 1  # open for the next message
    finally:
        own.close()
    assert spool_files(tmp_path) == []


def test_only_the_servers_user_can_read_the_spool(tmp_path):
    """Spooled messages hold patient data."""
    spool = Spool(tmp_path / "spool")
    spool.append(delivery("PRIVATE-1"))
    [path] = spool_files(tmp_path / "spool")
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
    spool.close()


def test_spooled_records_read_back_exactly(server, tmp_path):
    store = InboundPipeline(server).store
    spool = Spool(tmp_path)
    sent = delivery("EXACT-1", raw="MSH|^~\\&|LIS|县人民医院\rPID|1||甲\r".encode("gb18030"))
    spool.append(sent)
    spool.close()
    recover(tmp_path, store)
    [record] = store.find(control_id="EXACT-1")
    assert (record.raw, record.charset, record.message_type, record.version) == (sent.raw, "utf-8", "ORU^R01", "2.5")
    assert isinstance(record.received_at, datetime)


def test_a_message_takes_one_write_transaction_and_one_read_transaction(server):
    """The row of a new message is written with its resources: one turn of the database's
    writer per message, not one to store it and another to apply it. Its look-ups before the
    write (duplicates, patient, known identifiers) share one read transaction."""
    pipeline = InboundPipeline(server)
    assert pipeline.receive(oru_bytes("WARM-1")).status == "processed"
    here, opened = threading.get_ident(), {"write": 0, "read": 0}

    def counted(kind, begin):
        @contextlib.contextmanager
        def transaction():
            if threading.get_ident() == here:  # not the audit trail's thread
                opened[kind] += 1
            with begin() as conn:
                yield conn
        return transaction

    server.db.write = counted("write", server.db.write)
    server.db._transaction = counted("read", server.db._transaction)
    try:
        outcome = pipeline.receive(oru_bytes("ONE-1", patient=7))
    finally:
        del server.db.write, server.db._transaction
    assert outcome.status == "processed", outcome.problems
    assert opened == {"write": 1, "read": 1}
    assert pipeline.store.get(outcome.record_id).status == "processed"
