"""The MLLP listener with the real pipeline, over loopback sockets: several connections and
senders at once, ACKs after the commit, duplicates, garbage."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from hl7_inbound_messages import RESULTS, oru_bytes, unsupported

from adapters.hl7v2.mllp import MllpClient, frame, start_listener
from adapters.hl7v2.pipeline import InboundChannel, InboundPipeline
from fhir_server.auth.identity import SYSTEM


@contextlib.contextmanager
def mllp_listener(server, pipeline: InboundPipeline | None = None, threads: int = 4):
    """A real MLLP listener on a loopback port (yielded), in its own event-loop thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    channel = InboundChannel(pipeline or InboundPipeline(server), threads=threads)
    listener = asyncio.run_coroutine_threadsafe(
        start_listener(channel.handle, "127.0.0.1", 0, max_message_bytes=256 * 1024), loop).result(10)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        async def stop():
            listener.close()
            await listener.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        channel.close()


def msa(ack: bytes, codec: str = "utf-8") -> list[str]:
    line = next(seg for seg in ack.decode(codec).split("\r") if seg.startswith("MSA"))
    return line.split("|")


def test_concurrent_connections_from_several_senders_are_all_stored_and_acked(server):
    senders = [("LIS", "县人民医院"), ("LIS", "柳冲镇卫生院"), ("LIS", "城关镇卫生院"), ("HIS", "县人民医院")]

    def stream(sender_index: int, port: int) -> list[bytes]:
        sender = senders[sender_index]
        with MllpClient("127.0.0.1", port) as client:
            return [client.send(oru_bytes(f"S{sender_index}-{n}", sender=sender, patient=sender_index * 100 + n))
                    for n in range(5)]

    with mllp_listener(server) as port, ThreadPoolExecutor(len(senders)) as pool:
        answers = list(pool.map(lambda i: stream(i, port), range(len(senders))))
    for i, acks in enumerate(answers):
        assert [msa(a)[1:3] for a in acks] == [["AA", f"S{i}-{n}"] for n in range(5)]
    store = InboundPipeline(server).store
    assert store.counts() == {"processed": 20}
    for record in store.find():
        assert record.source.startswith("mllp 127.0.0.1:")
        assert sum(r.startswith("Observation/") for r in record.resources) == len(RESULTS)
        for reference in record.resources:  # every resource the record names was written
            rtype, rid = reference.split("/")[:2]
            assert server.resources.read(rtype, rid, identity=SYSTEM)["id"] == rid


def test_duplicates_refusals_and_garbage_on_one_connection(server):
    with mllp_listener(server) as port, MllpClient("127.0.0.1", port) as client:
        first = client.send(oru_bytes("M-1"))
        assert msa(first)[1:3] == ["AA", "M-1"]
        assert client.send(oru_bytes("M-1")) == first  # redelivery: the same ACK
        assert msa(client.send(unsupported("Q-1")))[1:3] == ["AR", "Q-1"]
        client.send_raw(b"\r\n\x00 noise " + frame(b"not an HL7 message at all"))
        assert msa(client.receive())[1] == "AR"
        gb = client.send(oru_bytes("M-GB", charset="GB18030", patient=9))
        assert msa(gb, "gb18030")[1:3] == ["AA", "M-GB"]
        assert "县人民医院".encode("gb18030") in gb
    counts = InboundPipeline(server).store.counts()
    assert counts == {"processed": 2, "duplicate": 1, "refused": 2}


def held_up_for(facility: str, held: threading.Event, release: threading.Event):
    """The real translation, which for ``facility``'s messages sets ``held`` and waits for ``release``."""
    from adapters.hl7v2.translate import translate

    def translate_held_up(raw: bytes, srv):
        translation = translate(raw, srv)
        if translation.header.sending_facility == facility:
            held.set()
            assert release.wait(60)
        return translation
    return translate_held_up


def test_a_message_held_up_in_its_write_does_not_hold_up_other_senders(server):
    """The database work runs in a thread pool: while one sender's message is stuck (here its
    translation waits for an event), another sender's message is stored, written and ACKed."""
    release, held = threading.Event(), threading.Event()
    slow_for_the_county_lis = held_up_for("县人民医院", held, release)

    with mllp_listener(server, InboundPipeline(server, translate=slow_for_the_county_lis)) as port:
        try:
            with MllpClient("127.0.0.1", port) as stuck, MllpClient("127.0.0.1", port) as other:
                stuck.send_raw(frame(oru_bytes("SLOW-1")))
                assert held.wait(10)  # the listener is held up in its translation
                ack = other.send(oru_bytes("FAST-1", sender=("LIS", "柳冲镇卫生院"), patient=2))
                assert msa(ack)[1:3] == ["AA", "FAST-1"]
                store = InboundPipeline(server).store
                assert store.find(control_id="SLOW-1") == []  # still in hand: spooled, no row yet
                release.set()
                assert msa(stuck.receive())[1:3] == ["AA", "SLOW-1"]
        finally:
            release.set()  # never leave the stuck thread waiting


def test_with_one_thread_a_process_applies_its_connections_messages_one_after_another(server):
    """The default (settings.mllp_threads = 1): another sender's message waits for the one in
    hand, and is applied after it."""
    release, held = threading.Event(), threading.Event()
    slow_for_the_county_lis = held_up_for("县人民医院", held, release)

    with mllp_listener(server, InboundPipeline(server, translate=slow_for_the_county_lis), threads=1) as port:
        try:
            with MllpClient("127.0.0.1", port) as first, MllpClient("127.0.0.1", port) as second:
                first.send_raw(frame(oru_bytes("FIRST-1")))
                assert held.wait(10)
                second.send_raw(frame(oru_bytes("SECOND-1", sender=("LIS", "柳冲镇卫生院"), patient=2)))
                store = InboundPipeline(server).store
                time.sleep(0.3)  # time enough for a second thread to have applied it
                assert store.find(control_id="SECOND-1") == []
                release.set()
                assert msa(first.receive())[1:3] == ["AA", "FIRST-1"]
                assert msa(second.receive())[1:3] == ["AA", "SECOND-1"]
        finally:
            release.set()
    [applied_first] = store.find(control_id="FIRST-1")
    [applied_second] = store.find(control_id="SECOND-1")
    assert applied_first.id < applied_second.id
