"""MLLP (Minimal Lower Layer Protocol, HL7 v2 appendix C): framing, an asyncio listener, a client.

A message travels as ``<VT> message <FS><CR>`` (0x0B ... 0x1C 0x0D). The listener:

- serves many connections at once (one asyncio task each); on one connection messages are
  answered in the order they came, each ACK after its message was handled;
- tolerates what real senders do: bytes between frames (line breaks, keep-alive bytes, junk)
  are dropped; a frame ended by ``<FS>`` without ``<CR>`` is accepted; a new ``<VT>`` inside
  a frame starts the frame again;
- refuses with a NAK (AR, ERR code 207) a frame larger than ``max_message_bytes`` (the rest of
  it is skipped) and an unframed block ended by ``<FS>`` (a sender that forgot ``<VT>``); a
  connection that sends only junk (more than ``max_message_bytes`` without a frame) gets a NAK
  and is closed; a connection silent for ``idle_timeout`` seconds is closed;
- never lets one connection's fault reach another or the listener: every error is logged
  and ends that connection only.

What a message means is the handler's business (``pipeline.InboundChannel.handle``): it gets
the bytes between ``<VT>`` and ``<FS>`` and the peer's address, and returns the ACK bytes (or
None to send nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from adapters.hl7v2.ack import build_ack, refusal_header
from adapters.hl7v2.contract import Problem

log = logging.getLogger(__name__)

__all__ = ["MllpClient", "MllpFramer", "Frame", "Refusal", "start_listener", "frame", "DEFAULT_MAX_MESSAGE_BYTES"]

START_BLOCK = 0x0B
END_BLOCK = 0x1C
CARRIAGE_RETURN = 0x0D
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 600.0
Handler = Callable[[bytes, str], Awaitable[bytes | None]]


def frame(message: bytes) -> bytes:
    return b"\x0b" + message + b"\x1c\r"


@dataclass(frozen=True)
class Frame:
    """A complete message (the bytes between ``<VT>`` and ``<FS>``)."""

    payload: bytes


@dataclass(frozen=True)
class Refusal:
    """Something to answer with a NAK: ``head`` is the start of the offending bytes (to find an
    MSH-10 in), ``reason`` says why; ``close`` ends the connection after the NAK."""

    head: bytes
    reason: str
    close: bool = False


class MllpFramer:
    """Turns a byte stream into frames and refusals (pure: no I/O, fed chunk by chunk)."""

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._in_frame = False
        self._skipping = False  # inside an oversize frame: drop until its <FS>
        self.junk_bytes = 0  # dropped between frames (for the log)

    def feed(self, data: bytes) -> Iterator[Frame | Refusal]:
        self._buffer += data
        while self._buffer:
            if self._skipping:
                end = self._buffer.find(END_BLOCK)
                if end < 0:
                    self._buffer.clear()
                    return
                del self._buffer[:end + 1]
                self._skipping = False
                continue
            if not self._in_frame:
                start = self._buffer.find(START_BLOCK)
                end = self._buffer.find(END_BLOCK)
                if end >= 0 and (start < 0 or end < start):
                    block = bytes(self._buffer[:end])
                    del self._buffer[:end + 1]
                    if block.strip(b"\r\n\t \x00"):
                        yield Refusal(block[:4096], "The message was not framed: MLLP needs <VT> before it")
                    continue
                if start < 0:
                    if len(self._buffer) > self.max_message_bytes:
                        head = bytes(self._buffer[:4096])
                        self._buffer.clear()
                        yield Refusal(head, "No MLLP frame (<VT> ... <FS><CR>) was found in the data sent",
                                      close=True)
                    return
                self.junk_bytes += len(self._buffer[:start].strip(b"\r\n\t \x00"))
                del self._buffer[:start + 1]
                self._in_frame = True
                continue
            end = self._buffer.find(END_BLOCK)
            restart = self._buffer.find(START_BLOCK)
            if restart >= 0 and (end < 0 or restart < end):
                self.junk_bytes += restart  # an unfinished frame, started again
                del self._buffer[:restart + 1]
                continue
            if end < 0:
                if len(self._buffer) > self.max_message_bytes:
                    head = bytes(self._buffer[:4096])
                    self._buffer.clear()
                    self._in_frame = False
                    self._skipping = True
                    yield Refusal(head, f"The message is larger than the limit of {self.max_message_bytes} bytes")
                return
            payload = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            if self._buffer[:1] == b"\r":
                del self._buffer[:1]
            self._in_frame = False
            if len(payload) > self.max_message_bytes:
                yield Refusal(payload[:4096], f"The message is larger than the limit of {self.max_message_bytes} bytes")
            else:
                yield Frame(payload)


def nak(refusal: Refusal) -> bytes:
    """The NAK (AR) for bytes the listener could not take as a message."""
    header = refusal_header(refusal.head)
    problem = Problem("", 0, None, None, "207", "E", refusal.reason)
    return build_ack(header, "AR", [problem])


async def start_listener(handler: Handler, host: str | None = None, port: int | None = None, *,
                         sock: socket.socket | None = None,
                         max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                         idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> asyncio.Server:
    """Listen for MLLP connections on ``host:port`` (port 0: any free port), or on the listening
    socket ``sock`` (a worker of ``serve --workers N``)."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        framer = MllpFramer(max_message_bytes)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65536), idle_timeout)
                if not data:
                    break
                close = False
                for event in framer.feed(data):
                    if isinstance(event, Frame):
                        ack = await handler(event.payload, peer)
                    else:
                        log.warning("MLLP %s: %s", peer, event.reason)
                        ack, close = nak(event), event.close
                    if ack is not None:
                        writer.write(frame(ack))
                        await writer.drain()
                    if close:
                        break
                if close:
                    break
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one connection's fault ends that connection only
            log.exception("MLLP connection %s failed", peer)
        finally:
            if framer.junk_bytes:
                log.info("MLLP %s: %d bytes between frames were dropped", peer, framer.junk_bytes)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    return await asyncio.start_server(connection, host, port, sock=sock, limit=2 ** 20)


class MllpClient:
    """A blocking MLLP client: ``send(message)`` returns the ACK's bytes (tests, benchmarks)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = bytearray()

    def send(self, message: bytes) -> bytes:
        self.sock.sendall(frame(message))
        return self.receive()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> bytes:
        """The next framed answer (without its framing)."""
        while True:
            start = self._buffer.find(START_BLOCK)
            end = self._buffer.find(END_BLOCK, start + 1) if start >= 0 else -1
            if start >= 0 and end >= 0:
                payload = bytes(self._buffer[start + 1:end])
                del self._buffer[:end + 1]
                if self._buffer[:1] == b"\r":
                    del self._buffer[:1]
                return payload
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the MLLP peer closed the connection")
            self._buffer += data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
