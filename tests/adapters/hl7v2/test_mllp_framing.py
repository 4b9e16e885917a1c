"""MLLP framing and the asyncio listener on a real loopback socket (the handler here only
answers with what it got; the full pipeline over MLLP is in test_mllp_pipeline.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import pytest

from adapters.hl7v2.mllp import Frame, MllpClient, MllpFramer, Refusal, frame, start_listener

MESSAGE = "MSH|^~\\&|LIS|县医院|||20260501||ORU^R01|C1|P|2.5\rPID|1||123\r".encode()


def events(framer: MllpFramer, *chunks: bytes) -> list:
    found = []
    for chunk in chunks:
        found.extend(framer.feed(chunk))
    return found


def test_a_frame_is_the_bytes_between_vt_and_fs():
    assert events(MllpFramer(), frame(MESSAGE)) == [Frame(MESSAGE)]


def test_a_frame_split_across_reads_byte_by_byte():
    data = frame(MESSAGE) + frame(b"MSH|second")
    assert events(MllpFramer(), *(data[i:i + 1] for i in range(len(data)))) == [Frame(MESSAGE), Frame(b"MSH|second")]


def test_junk_between_frames_is_dropped_and_counted():
    framer = MllpFramer()
    found = events(framer, b"\r\n  keep-alive" + frame(b"MSH|a") + b"\r\n\x00xx" + frame(b"MSH|b"))
    assert found == [Frame(b"MSH|a"), Frame(b"MSH|b")]
    assert framer.junk_bytes == len(b"keep-alive") + len(b"xx")


def test_a_frame_ended_by_fs_without_cr_is_accepted():
    assert events(MllpFramer(), b"\x0bMSH|a\x1c\x0bMSH|b\x1c\r") == [Frame(b"MSH|a"), Frame(b"MSH|b")]


def test_a_new_vt_inside_a_frame_starts_it_again():
    assert events(MllpFramer(), b"\x0bMSH|lost half\x0bMSH|whole\x1c\r") == [Frame(b"MSH|whole")]


def test_an_oversize_frame_is_refused_and_skipped_to_its_end():
    framer = MllpFramer(max_message_bytes=100)
    found = events(framer, b"\x0bMSH|^~\\&|LIS|H|||||ORU^R01|BIG1|P|2.5\r" + b"x" * 150, b"y" * 500,
                   b"\x1c\r" + frame(b"MSH|next"))
    assert len(found) == 2
    assert isinstance(found[0], Refusal) and not found[0].close
    assert "larger than the limit of 100 bytes" in found[0].reason
    assert b"BIG1" in found[0].head
    assert found[1] == Frame(b"MSH|next")


def test_an_unframed_message_ended_by_fs_is_refused():
    [refusal] = events(MllpFramer(), b"MSH|^~\\&|LIS|H|||||ORU^R01|NOVT|P|2.5\r\x1c\r")
    assert isinstance(refusal, Refusal) and "not framed" in refusal.reason


def test_endless_junk_without_a_frame_closes_the_connection():
    [refusal] = events(MllpFramer(max_message_bytes=50), b"z" * 60)
    assert refusal.close


# -- the listener ------------------------------------------------------------------------------

class Listener:
    """The MLLP listener on a loopback port, its event loop in a thread of its own."""

    def __init__(self, handler, **options):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            start_listener(handler, "127.0.0.1", 0, **options), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self):
        async def stop():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@contextlib.contextmanager
def listening(handler, **options):
    listener = Listener(handler, **options)
    try:
        yield listener
    finally:
        listener.close()


async def answer_with_reversed(raw: bytes, peer: str) -> bytes:
    if raw == b"SLOW":
        await asyncio.sleep(0.5)
    if raw == b"CRASH":
        raise RuntimeError("handler fault")
    return b"ACK:" + raw[::-1]


def test_the_listener_answers_each_frame_in_order_on_a_real_socket():
    with listening(answer_with_reversed) as listener, MllpClient("127.0.0.1", listener.port) as client:
        assert client.send(b"abc") == b"ACK:cba"
        client.send_raw(b"\r\njunk" + frame(b"one") + frame(b"two") + b"\n")
        assert client.receive() == b"ACK:eno"
        assert client.receive() == b"ACK:owt"


def test_many_concurrent_connections_and_a_slow_one_does_not_hold_up_the_others():
    with listening(answer_with_reversed) as listener:
        slow = MllpClient("127.0.0.1", listener.port)
        slow.send_raw(frame(b"SLOW"))
        clients = [MllpClient("127.0.0.1", listener.port) for _ in range(20)]
        answers = [c.send(f"m{i}".encode()) for i, c in enumerate(clients)]
        assert answers == [b"ACK:" + f"m{i}".encode()[::-1]
                           for i in range(20)]
        assert slow.receive() == b"ACK:WOLS"
        for c in [slow, *clients]:
            c.close()


def test_garbage_gets_a_nak_and_cannot_crash_the_listener():
    with listening(answer_with_reversed, max_message_bytes=1000) as listener:
        with MllpClient("127.0.0.1", listener.port) as bad:
            bad.send_raw(b"MSH|^~\\&|HIS|H|||||ADT^A01|RAW1|P|2.4\r\x1c\r")  # forgot <VT>
            nak = bad.receive().decode()
            assert "MSA|AR|RAW1" in nak and "not framed" in nak
            bad.send_raw(b"\x0b" + b"x" * 2000 + b"\x1c\r")  # too large
            assert "larger than the limit" in bad.receive().decode()
            assert bad.send(b"fine") == b"ACK:enif"  # the connection goes on after both
        with MllpClient("127.0.0.1", listener.port) as crashing:
            crashing.send_raw(frame(b"CRASH"))
            with pytest.raises(ConnectionError):
                crashing.receive()  # that connection ends...
        with MllpClient("127.0.0.1", listener.port) as after:
            assert after.send(b"ok") == b"ACK:ko"  # ...and the listener goes on
        with MllpClient("127.0.0.1", listener.port) as flood:
            flood.send_raw(b"\x00" * 5000)  # no frame at all: NAK, then closed
            assert "MSA|AR" in flood.receive().decode()
            with pytest.raises(ConnectionError):
                flood.receive()


def test_a_client_that_disconnects_mid_frame_does_no_harm():
    with listening(answer_with_reversed) as listener:
        raw = socket.create_connection(("127.0.0.1", listener.port))
        raw.sendall(b"\x0bMSH|half a mess")
        raw.close()
        time.sleep(0.05)
        with MllpClient("127.0.0.1", listener.port) as client:
            assert client.send(b"x") == b"ACK:x"


def test_an_idle_connection_is_closed():
    with listening(answer_with_reversed, idle_timeout=0.2) as listener, \
            MllpClient("127.0.0.1", listener.port) as client, pytest.raises(ConnectionError):
        client.receive()
