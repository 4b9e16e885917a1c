"""The spool: deliveries received and not yet in the inbound store, kept on disk.

A message must be kept from the moment it arrives, also when its process dies before the
message is finished. Writing its row to the store in a transaction of its own before the work
costs every message a second turn of the database's one writer (SQLite). Instead, each process
appends every new delivery to a spool file of its own, in one ``write`` (a process killed after
it leaves the record whole), and the delivery's row is written in the transaction of its
outcome: with its resources, or with its refusal. A spool file is dropped once every delivery
in it has its row.

A spool file stays locked (``flock``) by its process for as long as the process lives.
``recover`` reads back the files of processes that are gone: each delivery without a row gets a
``received`` row, which the listener then finishes like any unfinished message. The durability
is the SQLite store's (``synchronous=NORMAL``): nothing is lost when a process dies; an
operating-system crash may lose the last writes, which their senders, never ACKed, send again.

Record layout: ``HL7S``, the lengths of the metadata and of the message (4 bytes each, big
endian), the metadata (JSON) and the message bytes exactly as received.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson

from adapters.hl7v2.inbound_store import Delivery, InboundStore

log = logging.getLogger(__name__)

__all__ = ["Spool", "Ticket", "recover", "spool_directory"]

_MAGIC = b"HL7S"
_LENGTHS = struct.Struct(">II")
ROTATE_BYTES = 4 * 1024 * 1024  # a process starts a new file past this size; the old one goes when finished


def spool_directory(db, configured: Path | None = None) -> Path:
    """Where a server's processes spool: ``configured``, else beside the SQLite file, else (a
    database server) a directory named after the database in the working directory."""
    if configured is not None:
        return configured
    if db.url.get_backend_name() == "sqlite":
        return Path(f"{db.url.database}.hl7-spool")
    return Path(f"hl7-spool-{db.url.database}").resolve()


class _File:
    """One spool file of this process: its descriptor (holding the lock) and the deliveries in
    it that have no row yet."""

    def __init__(self, path: Path):
        self.path = path
        # made under another name and locked before it is named .spool, where recovery looks
        making = path.with_suffix(".making")
        # unbuffered: each record is one write(2); readable by this user only (patient data)
        self.stream = io.FileIO(os.open(making, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        fcntl.flock(self.stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        making.rename(path)
        self.size = 0
        self.pending = 0

    def write(self, record: bytes) -> None:
        written = self.stream.write(record)
        if written != len(record):
            raise OSError(f"spool {self.path}: wrote {written} of {len(record)} bytes")
        self.size += written

    def drop(self) -> None:
        """Remove the file (unlinked while still locked, so no recovery can take it meanwhile)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.stream.close()


class Ticket:
    """A delivery in the spool; released once its row is in the store."""

    __slots__ = ("file",)

    def __init__(self, file: _File):
        self.file = file


class Spool:
    """This process's spool files in ``directory`` (made on first use); safe across threads."""

    def __init__(self, directory: Path, rotate_bytes: int = ROTATE_BYTES):
        self.directory = directory
        self.rotate_bytes = rotate_bytes
        self._lock = threading.Lock()
        self._current: _File | None = None
        self._files = 0

    def append(self, delivery: Delivery) -> Ticket:
        """Keep ``delivery`` on disk (one ``write``) until its ticket is released."""
        meta = orjson.dumps({
            "sender": delivery.sender, "control_id": delivery.control_id, "message_type": delivery.message_type,
            "version": delivery.version, "charset": delivery.charset, "source": delivery.source,
            "received_at": delivery.received_at.isoformat(),
        })
        record = _MAGIC + _LENGTHS.pack(len(meta), len(delivery.raw)) + meta + delivery.raw
        with self._lock:
            file = self._writable()
            file.write(record)
            file.pending += 1
            return Ticket(file)

    def release(self, ticket: Ticket) -> None:
        """The delivery has its row: a finished file that holds nothing else pending goes."""
        with self._lock:
            file = ticket.file
            file.pending -= 1
            if file.pending == 0 and file is not self._current:
                file.drop()

    def close(self) -> None:
        """Drop the current file if nothing in it is pending (else it stays for ``recover``)."""
        with self._lock:
            file, self._current = self._current, None
            if file is None:
                return
            if file.pending == 0:
                file.drop()
            else:
                file.stream.close()

    def _writable(self) -> _File:
        current = self._current
        if current is not None and current.size < self.rotate_bytes:
            return current
        if current is not None and current.pending == 0:
            current.drop()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._files += 1
        name = f"{socket.gethostname()}-{os.getpid()}-{self._files}-{uuid.uuid4().hex[:8]}.spool"
        self._current = _File(self.directory / name)
        return self._current


def recover(directory: Path, store: InboundStore) -> int:
    """Give every delivery in the spool files of stopped processes a ``received`` row (unless it
    has a row already) and remove those files; returns how many rows were added. The files of
    live processes (locked) are left alone. A file with a damaged record keeps what follows it:
    it is renamed ``*.damaged`` for a person to look at."""
    if not directory.is_dir():
        return 0
    added = 0
    for path in sorted(directory.glob("*.spool")):
        with _abandoned(path) as fd:
            if fd is None:
                continue
            try:
                for delivery in _deliveries(path, fd):
                    if store.keep(delivery):
                        added += 1
            except _Damaged as damage:
                log.error("spool %s: %s; the deliveries before it are recovered, the file is kept as %s",
                          path, damage, path.with_suffix(".damaged").name)
                path.rename(path.with_suffix(".damaged"))
                continue
            path.unlink(missing_ok=True)
    return added


class _Damaged(Exception):
    """A spool record that cannot be read (not one cut short by a crash at the end)."""


@contextlib.contextmanager
def _abandoned(path: Path) -> Iterator[int | None]:
    """The file's descriptor, locked, if its process is gone; None while a process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # dropped by its process, or taken by another recovery
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)


def _deliveries(path: Path, fd: int) -> Iterator[Delivery]:
    with os.fdopen(os.dup(fd), "rb") as stream:
        data = stream.read()
    at = 0
    header = len(_MAGIC) + _LENGTHS.size
    while at < len(data):
        if not _MAGIC.startswith(data[at:at + len(_MAGIC)]):
            raise _Damaged(f"no record starts at byte {at}")
        if at + header <= len(data):
            meta_length, raw_length = _LENGTHS.unpack_from(data, at + len(_MAGIC))
            end = at + header + meta_length + raw_length
        if at + header > len(data) or end > len(data):
            # the last write of a process that died in it: never ACKed, so its sender sends it again
            log.warning("spool %s: the record at byte %d is cut short; the deliveries before it are recovered",
                        path, at)
            return
        try:
            meta = orjson.loads(data[at + header:at + header + meta_length])
            delivery = Delivery(**{**meta, "received_at": datetime.fromisoformat(meta["received_at"])},
                                raw=data[at + header + meta_length:end])
        except (ValueError, TypeError, KeyError) as exc:
            raise _Damaged(f"the record at byte {at} cannot be read ({exc})") from exc
        yield delivery
        at = end
