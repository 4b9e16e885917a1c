"""The inbound store: every HL7 v2 message received, kept with what became of it.

One row per delivery in ``hl7_inbound``:

- ``raw`` holds the message bytes exactly as they arrived. A new message's row is written in
  the transaction of its outcome: with its resources, or with its refusal. Until then the
  delivery waits in the process's spool (``spool.py``), so that nothing received is ever lost.
- ``sender`` (MSH-3|MSH-4), ``control_id`` (MSH-10), ``message_type`` (MSH-9), ``version``
  (MSH-12), ``charset`` (the codec the message was read with) and ``source`` (the MLLP peer or
  the file it came from) say what it is; ``received_at`` when it came.
- ``status``: ``received`` (stored, not finished: a delivery recovered from the spool of a
  stopped process), ``processed`` (its resources are written), ``error`` (AE: its content could
  not be mapped or written, or an internal error), ``refused`` (AR: unreadable, or a message
  type the adapter does not take) and ``duplicate`` (a redelivery of a message already
  finished: ``duplicate_of`` names the original, which stays the one record of the outcome).
- ``ack`` is the acknowledgement sent (bytes, in the sender's character set), ``ack_code`` its
  MSA-1; ``problems`` the ERR list as JSON; ``resources`` the ``Type/id/_history/v`` of every
  resource written. These are recorded in the same database transaction as the resources.
- ``attempts`` counts processing runs (the first one and each replay).

The original of a (sender, control id) is unique (partial unique index on the rows with no
``duplicate_of``), so two processes receiving the same message cannot both take it as new.

Migration: ``fhir_server/storage/migrations/versions/0004_hl7_inbound.py`` (branch ``hl7v2``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from fhir_server.storage.engine import Database
from fhir_server.storage.schema import PidType, metadata

__all__ = ["Delivery", "InboundRecord", "InboundStore", "Received", "hl7_inbound", "STATUSES", "FINISHED", "REPLAYABLE"]

STATUSES = ("received", "processed", "error", "refused", "duplicate")
FINISHED = frozenset({"processed", "error", "refused"})
REPLAYABLE = frozenset({"received", "error", "refused"})

hl7_inbound = Table(
    "hl7_inbound",
    metadata,
    Column("id", PidType, primary_key=True, autoincrement=True),
    Column("sender", String(400), nullable=False),
    Column("control_id", String(200), nullable=True),
    Column("message_type", String(40), nullable=True),
    Column("version", String(16), nullable=True),
    Column("charset", String(40), nullable=True),
    Column("source", String(400), nullable=True),
    Column("received_at", DateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("duplicate_of", PidType, nullable=True),
    Column("raw", LargeBinary, nullable=False),
    Column("ack", LargeBinary, nullable=True),
    Column("ack_code", String(2), nullable=True),
    Column("problems", Text, nullable=True),
    Column("resources", Text, nullable=True),
    Column("processed_at", DateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Index("uq_hl7_inbound_sender_control_id", "sender", "control_id", unique=True,
          sqlite_where=text("duplicate_of IS NULL"), postgresql_where=text("duplicate_of IS NULL")),
    Index("ix_hl7_inbound_status", "status", "id"),
    Index("ix_hl7_inbound_received_at", "received_at"),
)


# The statements of every message, built once (SQLAlchemy then reuses their compiled form).
_DELIVERY = ("sender", "control_id", "message_type", "version", "charset", "source", "raw", "received_at")
_INSERT_RECEIVED = insert(hl7_inbound).values({
    **{name: bindparam(name) for name in _DELIVERY}, "status": "received", "attempts": 0})
_INSERT_FINISHED = insert(hl7_inbound).values({
    **{name: bindparam(name) for name in (*_DELIVERY, "status", "ack", "ack_code", "problems", "resources",
                                          "processed_at")},
    "attempts": 1})
_ORIGINAL = select(hl7_inbound).where(
    hl7_inbound.c.sender == bindparam("sender"), hl7_inbound.c.control_id == bindparam("control_id"),
    hl7_inbound.c.duplicate_of.is_(None))
_RECORD_OUTCOME = update(hl7_inbound).where(hl7_inbound.c.id == bindparam("record_id")).values({
    **{name: bindparam(name) for name in ("status", "ack", "ack_code", "problems", "resources", "processed_at")},
    "attempts": hl7_inbound.c.attempts + 1})
_RECORD_OUTCOME_AND_HEADER = _RECORD_OUTCOME.values(
    {name: bindparam(name) for name in ("message_type", "version", "charset")})


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class InboundRecord:
    id: int
    sender: str
    control_id: str | None
    message_type: str | None
    version: str | None
    charset: str | None
    source: str | None
    received_at: datetime
    status: str
    duplicate_of: int | None
    raw: bytes
    ack: bytes | None
    ack_code: str | None
    problems: list[dict] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    processed_at: datetime | None = None
    attempts: int = 0

    @classmethod
    def from_row(cls, row) -> InboundRecord:
        values = dict(row._mapping)
        values["problems"] = orjson.loads(values["problems"]) if values["problems"] else []
        values["resources"] = orjson.loads(values["resources"]) if values["resources"] else []
        values["raw"] = bytes(values["raw"])
        values["ack"] = bytes(values["ack"]) if values["ack"] is not None else None
        return cls(**values)

    def summary(self) -> dict:
        """What a list shows: everything but the message and the ACK themselves."""
        return {
            "id": self.id, "sender": self.sender, "controlId": self.control_id,
            "messageType": self.message_type, "version": self.version, "charset": self.charset,
            "source": self.source, "receivedAt": _instant(self.received_at), "status": self.status,
            "duplicateOf": self.duplicate_of, "ackCode": self.ack_code,
            "processedAt": _instant(self.processed_at), "attempts": self.attempts,
            "problems": self.problems, "resources": self.resources,
        }

    def detail(self) -> dict:
        """The summary plus the message and the ACK as text (decoded with the message's charset)."""
        codec = self.charset or "utf-8"
        return {
            **self.summary(),
            "message": _text(self.raw, codec),
            "ack": _text(self.ack, codec) if self.ack is not None else None,
        }


def _instant(value: datetime | None) -> str | None:
    return value.replace(tzinfo=UTC).isoformat() if value else None


def _text(data: bytes, codec: str) -> str:
    try:
        return data.decode(codec, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Delivery:
    """One message as it came in, before (or without) its row."""

    sender: str  # MSH-3|MSH-4 ("" when no MSH could be read)
    control_id: str | None
    message_type: str | None
    version: str | None
    charset: str | None
    source: str | None
    raw: bytes
    received_at: datetime = field(default_factory=_now)

    def values(self) -> dict:
        return {name: getattr(self, name) for name in _DELIVERY}


@dataclass(frozen=True)
class Received:
    """The outcome of storing a delivery: the record to process, or the finished original."""

    record_id: int  # the row of this delivery (a duplicate's own row, or the one to process)
    original: InboundRecord | None = None  # set when this delivery repeats a finished message


class InboundStore:
    """Reads and writes ``hl7_inbound``; every method runs in a transaction of its own unless
    it takes a connection (then it runs in the caller's)."""

    def __init__(self, db: Database):
        self.db = db

    # -- receiving -------------------------------------------------------------------------
    def original(self, sender: str, control_id: str | None) -> InboundRecord | None:
        """The first delivery of the message ``sender`` numbered ``control_id``, if stored."""
        if control_id is None:
            return None
        with self.db.read() as conn:
            row = conn.execute(_ORIGINAL, {"sender": sender, "control_id": control_id}).first()
        return InboundRecord.from_row(row) if row is not None else None

    def receive(self, delivery: Delivery) -> Received:
        """Store a delivery now, committed before this returns.

        A new message gets a ``received`` row. A message already finished (same sender and
        control id) gets a ``duplicate`` row pointing at the original, which is returned. A
        message stored earlier but never finished (its process stopped) is taken up again: its
        row is reused with these bytes.
        """
        for _ in range(3):
            # the look-up reads before the write transaction: the caller holds the sender's
            # turn, and the unique index catches whatever slips past (tried again)
            original = self.original(delivery.sender, delivery.control_id)
            try:
                with self.db.write() as conn:
                    return self._receive(conn, delivery, original)
            except IntegrityError:
                continue  # another process stored the same message at the same moment: look again
        raise RuntimeError(f"Could not store the message {delivery.control_id!r} from {delivery.sender!r}")

    def keep(self, delivery: Delivery) -> bool:
        """A ``received`` row for a delivery recovered from a spool, unless it has a row already
        (its process stopped after the row was committed); True if one was added."""
        with self.db.write() as conn:
            if delivery.control_id is not None:
                found = conn.execute(_ORIGINAL, {"sender": delivery.sender, "control_id": delivery.control_id})
            else:  # no control id: the same delivery is the one received at the same instant
                found = conn.execute(select(hl7_inbound.c.id).where(
                    hl7_inbound.c.sender == delivery.sender, hl7_inbound.c.control_id.is_(None),
                    hl7_inbound.c.received_at == delivery.received_at))
            if found.first() is not None:
                return False
            conn.execute(_INSERT_RECEIVED, delivery.values())
            return True

    def _receive(self, conn: Connection, delivery: Delivery, original: InboundRecord | None) -> Received:
        if original is not None and original.status not in FINISHED:
            conn.execute(update(hl7_inbound).where(hl7_inbound.c.id == original.id).values(
                raw=delivery.raw, source=delivery.source))
            return Received(original.id)
        if original is not None:
            record_id = conn.execute(insert(hl7_inbound).values(
                **delivery.values(), status="duplicate", duplicate_of=original.id, ack=original.ack,
                ack_code=original.ack_code, processed_at=_now(), attempts=0)).inserted_primary_key[0]
            return Received(record_id, original)
        record_id = conn.execute(_INSERT_RECEIVED, delivery.values()).inserted_primary_key[0]
        return Received(record_id)

    def record_outcome(self, conn: Connection, record: int | Delivery, *, status: str, ack: bytes | None,
                       ack_code: str | None, problems: Iterable[dict] = (), resources: Iterable[str] = (),
                       header: dict | None = None) -> int:
        """Record what became of a message, in the caller's transaction (with its resources):
        on its row, or (a new delivery, waiting in the spool) on a row written now. Returns the
        row's id."""
        values = {
            "status": status, "ack": ack, "ack_code": ack_code,
            "problems": orjson.dumps(list(problems)).decode(),
            "resources": orjson.dumps(list(resources)).decode(), "processed_at": _now(),
        }
        if isinstance(record, Delivery):
            return conn.execute(_INSERT_FINISHED, {**record.values(), **values}).inserted_primary_key[0]
        if header:
            conn.execute(_RECORD_OUTCOME_AND_HEADER, {**values, **header, "record_id": record})
        else:
            conn.execute(_RECORD_OUTCOME, {**values, "record_id": record})
        return record

    def finish(self, record: int | Delivery, **outcome) -> int:
        """``record_outcome`` in a transaction of its own (nothing else is written)."""
        with self.db.write() as conn:
            return self.record_outcome(conn, record, **outcome)

    # -- reading ---------------------------------------------------------------------------
    def get(self, record_id: int) -> InboundRecord | None:
        with self.db.read() as conn:
            row = conn.execute(select(hl7_inbound).where(hl7_inbound.c.id == record_id)).first()
        return InboundRecord.from_row(row) if row is not None else None

    def find(self, *, status: str | Iterable[str] | None = None, sender: str | None = None,
             control_id: str | None = None, after_id: int | None = None,
             limit: int = 100) -> list[InboundRecord]:
        """Records in the order they were received (oldest first), filtered."""
        query = select(hl7_inbound).order_by(hl7_inbound.c.id).limit(limit)
        if isinstance(status, str):
            query = query.where(hl7_inbound.c.status == status)
        elif status is not None:
            query = query.where(hl7_inbound.c.status.in_(list(status)))
        if sender is not None:
            query = query.where(hl7_inbound.c.sender == sender)
        if control_id is not None:
            query = query.where(hl7_inbound.c.control_id == control_id)
        if after_id is not None:
            query = query.where(hl7_inbound.c.id > after_id)
        with self.db.read() as conn:
            return [InboundRecord.from_row(row) for row in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        """How many records there are in each status."""
        with self.db.read() as conn:
            rows = conn.execute(select(hl7_inbound.c.status, func.count()).group_by(hl7_inbound.c.status))
            return {status: count for status, count in rows}
