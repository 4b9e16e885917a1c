"""The inbound pipeline: one HL7 v2 message in, its resources written, its ACK out.

For every message, whatever it came through (MLLP, a file, a replay):

1. Read the header (``translate.read_header``). A message without a readable MSH is stored
   as ``refused`` and answered with a NAK (AR) built from what can be guessed.
2. Take the sender's turn: messages of one sender (MSH-3|MSH-4) are applied one at a time, in
   the order they arrived, by every process using the database (``Database.exclusive``: a lock
   file per sender on SQLite, an advisory lock on PostgreSQL); different senders proceed side by
   side.
3. Keep the raw bytes before anything else: a new message in the process's spool
   (``spool.py``) until its row is written with its outcome. A redelivery of a finished message
   (same sender and MSH-10) is stored as ``duplicate`` and answered with the original ACK;
   nothing else happens.
4. Translate (``translate.translate``). AA: the Bundle's conditional entries are looked up
   (``known_ids.with_known_ids``, outside the write transaction), and the Bundle, plus a
   Provenance naming every entry as its target and the message as its source, is written by
   ``run_transaction`` with the message's row and outcome (``processed``, the ACK, the ids
   written) in the SAME database transaction: one turn of the database's writer per message.
   A patient or institution another message created in the meantime makes the write roll back
   and be looked up and done again. AE / AR, a write the server refuses (validation, a failed
   reference) or an internal error: nothing is written and the row gets ``error`` /
   ``refused``, the ACK and the problems.
5. Answer: the ACK is returned only after that commit (the caller sends it).

``InboundPipeline`` is synchronous (the CLI, a replay); ``InboundChannel`` is its asyncio face
for the MLLP listener: it orders each sender's messages with a FIFO ``asyncio.Lock`` and runs
the work off the event loop, in ``settings.mllp_threads`` threads per process. One by default:
a process then applies the messages of all its connections one after another, in the order they
come, and the worker processes (``serve --workers``) run side by side. Messages applied side by
side in one process slow each other down (the GIL: the one holding the database's write lock
waits for the others) and on two cores the server took fewer messages per second that way
(``bench/hl7_ingest.py --mllp-threads``). More threads let another sender's message pass one
that is held up, waiting for its sender's turn in another process, say.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError, OperationalError

from adapters.hl7v2.ack import acknowledgement, build_ack, refusal_header
from adapters.hl7v2.contract import Header, MessageUnreadable, Problem, Translation
from adapters.hl7v2.inbound_store import REPLAYABLE, Delivery, InboundStore
from adapters.hl7v2.known_ids import check_created, with_known_ids
from adapters.hl7v2.spool import Spool, spool_directory
from fhir_server.auth.identity import Identity
from fhir_server.errors import Conflict, FhirError, MultipleMatches

log = logging.getLogger(__name__)

__all__ = ["InboundChannel", "InboundPipeline", "Outcome", "NotReplayable", "pipeline_for", "provenance_entry"]

MESSAGE_SYSTEM = "https://county-fhir.example.org/fhir/sid/hl7v2-message"  # value: sender|MSH-10
SENDER_SYSTEM = "https://county-fhir.example.org/fhir/sid/hl7v2-sender"  # value: MSH-3|MSH-4
_STATUS_OF = {"AA": "processed", "AE": "error", "AR": "refused"}
_RETRIES = 3  # a write that lost a race (another message created the same Patient) is tried again,
_RETRY_PAUSE = 0.02  # after a pause that grows each time: the winner's commit may still be pending
# (a group commit of this process, which the look-up of the retry would not yet see)

Reader = Callable[[bytes], Header]
Translator = Callable[[bytes, object], Translation]


class NotReplayable(ValueError):
    """The record cannot be replayed (unknown, already processed, or a duplicate)."""


@dataclass
class Outcome:
    """What became of one delivery."""

    status: str  # processed / error / refused / duplicate, or "not stored"
    ack: bytes | None  # the bytes to send back (None: send nothing)
    ack_code: str | None
    record_id: int | None = None
    duplicate_of: int | None = None
    problems: list[Problem] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)


def _default_reader(raw: bytes) -> Header:
    from adapters.hl7v2.translate import read_header

    return read_header(raw)


def _default_translator(raw: bytes, server) -> Translation:
    from adapters.hl7v2.translate import translate

    return translate(raw, server)


class InboundPipeline:
    def __init__(self, server, *, read_header: Reader | None = None, translate: Translator | None = None):
        self.server = server
        self.store = InboundStore(server.db)
        self.spool = Spool(spool_directory(server.db, server.settings.hl7_spool_dir))
        self._read_header = read_header or _default_reader
        self._translate = translate or _default_translator

    # -- the steps ---------------------------------------------------------------------------
    def read_header(self, raw: bytes) -> Header | None:
        """The message's header, or None when no MSH can be read."""
        try:
            return self._read_header(raw)
        except MessageUnreadable:
            return None
        except Exception:  # noqa: BLE001 - a reader fault must not lose the message
            log.exception("reading an HL7 v2 header failed")
            return None

    @contextlib.contextmanager
    def sender_turn(self, sender: str) -> Iterator[None]:
        """One message of ``sender`` at a time, in every thread and process using the database
        (several MLLP workers, a replay, an ``import-hl7``)."""
        with self.server.db.exclusive(f"hl7v2 sender {sender}"):
            yield

    def receive(self, raw: bytes, *, source: str | None = None, header: Header | None = None) -> Outcome:
        """Store, translate, write and acknowledge one message (steps 1-5 of the module)."""
        header = header or self.read_header(raw)
        if header is None:
            return self._refuse_unreadable(raw, source)
        # the look-ups before the write (duplicates, patients, known identifiers) share one read
        # transaction, begun once the sender's previous message is committed
        with self.sender_turn(header.sender), self.server.db.snapshot():
            delivery = Delivery(header.sender, header.control_id, header.message_type, header.version,
                                header.charset, source, raw)
            try:
                original = self.store.original(header.sender, header.control_id)
                if original is None:
                    ticket = self.spool.append(delivery)
                else:  # a redelivery: a duplicate, or the resend of one a stopped process left
                    received = self.store.receive(delivery)
            except Exception:  # noqa: BLE001 - the store is down: say so, the sender will resend
                log.exception("storing an HL7 v2 message failed")
                return self._not_stored(header)
            if original is None:
                outcome = self._process(delivery, raw, header)
                self.spool.release(ticket)  # its row is written (or the sender was told to resend)
                return outcome
            if received.original is not None:
                original = received.original
                return Outcome("duplicate", original.ack, original.ack_code, received.record_id,
                               duplicate_of=original.id, resources=original.resources,
                               problems=[Problem(**p) for p in original.problems])
            return self._process(received.record_id, raw, header)

    def close(self) -> None:
        """Drop this process's spool file (what is still in hand stays for recovery)."""
        self.spool.close()

    def replay(self, record_id: int) -> Outcome:
        """Translate and write a stored message again (after its mapping or code table was
        fixed); the record gets the new outcome. Only ``error``, ``refused`` and unfinished
        (``received``) records can be replayed."""
        record = self.store.get(record_id)
        if record is None:
            raise NotReplayable(f"No inbound message {record_id}")
        if record.status not in REPLAYABLE:
            raise NotReplayable(f"Inbound message {record_id} is {record.status}; only messages in error, "
                                "refused or never finished can be replayed")
        header = self.read_header(record.raw)
        if header is None:
            return self._refuse_unreadable(record.raw, record.source, record_id=record.id)
        with self.sender_turn(header.sender), self.server.db.snapshot():
            current = self.store.get(record_id)
            if current is None or current.status not in REPLAYABLE:  # replayed meanwhile
                raise NotReplayable(f"Inbound message {record_id} is {current.status if current else 'gone'}")
            return self._process(record.id, record.raw, header, update_header=True)

    # -- processing ----------------------------------------------------------------------------
    # ``record`` is the message's row, or (a new message, waiting in the spool) its delivery,
    # which gets its row in the transaction of its outcome.
    def _process(self, record: int | Delivery, raw: bytes, header: Header, *,
                 update_header: bool = False) -> Outcome:
        header_values = _header_values(header) if update_header else None
        try:
            translation = self._translate(raw, self.server)
        except MessageUnreadable as exc:
            problem = Problem("MSH", 1, None, None, "100", "E", f"The message could not be read: {exc}")
            return self._finish(record, header, "AR", [problem], header_values)
        except Exception:  # noqa: BLE001 - a mapping fault is this message's error, not the listener's
            reference = uuid.uuid4().hex[:12]
            log.exception("translating HL7 v2 message %s failed (reference %s)", _named(record), reference)
            problem = Problem("", 0, None, None, "207", "E",
                              f"Internal error while reading the message (reference {reference})")
            return self._finish(record, header, "AE", [problem], header_values)
        header = translation.header or header
        if translation.status != "AA":
            return self._finish(record, header, translation.status, translation.problems, header_values)
        if not translation.bundle or not translation.bundle.get("entry"):
            return self._finish(record, header, "AA", translation.problems, header_values)
        return self._write(record, header, translation, header_values)

    def _write(self, record: int | Delivery, header: Header, translation: Translation,
               header_values: dict | None) -> Outcome:
        problems = list(translation.problems)
        identity = sending_system(header)
        code = acknowledgement(header, "AA").code
        ack = build_ack(header, code, problems) if code else None
        record_id: list[int] = []

        def record_outcome(conn, written: list[str]) -> None:
            record_id[:] = [self.store.record_outcome(
                conn, record, status="processed", ack=ack, ack_code=code,
                problems=[asdict(p) for p in problems], resources=written, header=header_values)]

        for attempt in range(_RETRIES + 1):
            try:
                written = self._apply(translation.bundle, header, identity, record_outcome)
                return Outcome("processed", ack, code, record_id[0], problems=problems, resources=written)
            except (IntegrityError, Conflict, OperationalError) as exc:
                if isinstance(exc, MultipleMatches):  # the content's fault (an identifier matches two)
                    return self._finish(record, header, "AE", problems + [
                        _problem_from(issue.diagnostics, issue.expression) for issue in exc.issues], header_values)
                if attempt < _RETRIES:
                    log.info("HL7 v2 message %s: write raced another, trying again (%s)", _named(record), exc)
                    time.sleep(_RETRY_PAUSE * (attempt + 1))
                    continue
                return self._internal_error(record, header, problems, header_values)
            except FhirError as exc:
                refused = problems + [_problem_from(issue.diagnostics, issue.expression) for issue in exc.issues
                                      if issue.severity in ("error", "fatal")]
                return self._finish(record, header, "AE", refused, header_values)
            except Exception:  # noqa: BLE001 - this message's error, not the listener's
                return self._internal_error(record, header, problems, header_values)
        raise AssertionError("unreachable")

    def _apply(self, bundle: dict, header: Header, identity: Identity,
               record_outcome: Callable[[object, list[str]], None]) -> list[str]:
        """Write ``bundle`` (its conditional entries looked up now: a retry sees what another
        write stored) with its Provenance; ``record_outcome(conn, written)`` runs in the same
        database transaction. Returns the ``Type/id/_history/v`` of every resource written or named."""
        from fhir_server.operations.bundle import run_transaction

        known = with_known_ids(self.server, bundle, identity)
        entries = known.bundle["entry"]
        provenance = provenance_entry(entries, header, known.existing)
        written: list[str] = []

        def alongside(conn, results: list[dict]) -> None:
            check_created(self.server, conn, known, identity)
            written[:] = [*(e.get("response", {}).get("location", "") for e in results), *known.existing]
            record_outcome(conn, written)

        run_transaction(self.server, {**known.bundle, "entry": [*entries, provenance]}, identity=identity,
                        alongside=alongside)
        return written

    def _internal_error(self, record: int | Delivery, header: Header, problems: list[Problem],
                        header_values: dict | None) -> Outcome:
        reference = uuid.uuid4().hex[:12]
        log.exception("writing HL7 v2 message %s failed (reference %s)", _named(record), reference)
        problem = Problem("", 0, None, None, "207", "E",
                          f"Internal error while writing the message; nothing was written (reference {reference})")
        return self._finish(record, header, "AE", [*problems, problem], header_values)

    def _finish(self, record: int | Delivery, header: Header, outcome: str, problems: list[Problem],
                header_values: dict | None) -> Outcome:
        """Record an outcome that writes no resource, and build its ACK."""
        if outcome not in _STATUS_OF:
            outcome = "AE"
        code = acknowledgement(header, outcome).code  # type: ignore[arg-type]
        ack = build_ack(header, code, problems) if code else None
        status = _STATUS_OF[outcome]
        try:
            record_id = self.store.finish(record, status=status, ack=ack, ack_code=code,
                                          problems=[asdict(p) for p in problems], header=header_values)
        except Exception:  # noqa: BLE001 - the outcome could not be recorded: the sender must resend
            log.exception("recording the outcome of HL7 v2 message %s failed", _named(record))
            return self._not_stored(header, record if isinstance(record, int) else None)
        return Outcome(status, ack, code, record_id, problems=list(problems))

    def _refuse_unreadable(self, raw: bytes, source: str | None, record_id: int | None = None) -> Outcome:
        header = refusal_header(raw)
        problem = Problem("MSH", 1, None, None, "100", "E",
                          "No MSH segment could be read: the message must start with MSH and its encoding characters")
        ack = build_ack(header, "AR", [problem])
        record = record_id if record_id is not None else Delivery("", None, None, None, None, source, raw)
        try:
            record_id = self.store.finish(record, status="refused", ack=ack, ack_code="AR",
                                          problems=[asdict(problem)])
        except Exception:  # noqa: BLE001
            log.exception("storing an unreadable HL7 v2 message failed")
        return Outcome("refused", ack, "AR", record_id, problems=[problem])

    def _not_stored(self, header: Header, record_id: int | None = None) -> Outcome:
        problem = Problem("", 0, None, None, "207", "E",
                          "The message could not be stored; nothing was written. Send it again later")
        code = acknowledgement(header, "AE", stored=False).code
        ack = build_ack(header, code, [problem]) if code else None
        return Outcome("not stored", ack, code, record_id, problems=[problem])


def _named(record: int | Delivery) -> str:
    """A message in the log: its row, or (no row yet) its control id and sender."""
    if isinstance(record, Delivery):
        return f"{record.control_id} from {record.sender}"
    return f"(inbound message {record})"


def _header_values(header: Header) -> dict:
    return {"message_type": header.message_type, "version": header.version, "charset": header.charset}


def _problem_from(diagnostics: str, expression: tuple[str, ...]) -> Problem:
    where = f" ({', '.join(expression)})" if expression else ""
    return Problem("", 0, None, None, "207", "E", f"The FHIR server refused the mapped resources: {diagnostics}{where}")


def sending_system(header: Header) -> Identity:
    """Who writes a message's resources: the sending application at its facility (MSH-3/4).

    Bound to no organisation (a hospital LIS reports for patients of every clinic), and
    audited as that system: each resource it writes leaves an AuditEvent naming it.
    """
    return Identity(f"hl7v2:{header.sender}", None, ("system/*.cruds",), unrestricted=True)


def provenance_entry(entries: list[dict], header: Header, existing: list[str] = ()) -> dict:
    """A Provenance entry: every resource the Bundle writes is its target (and the stored ones
    it names instead of creating them, ``Type/id/_history/v``), the message its source entity
    and the sending application at its facility its author."""
    targets = [{"reference": e["fullUrl"]} for e in entries
               if e.get("fullUrl") and e.get("request", {}).get("method") in ("POST", "PUT")]
    targets += [{"reference": "/".join(reference.split("/")[:2])} for reference in existing]
    sender = header.sending_application + (f" @ {header.sending_facility}" if header.sending_facility else "")
    provenance = {
        "resourceType": "Provenance",
        "target": targets,
        "recorded": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "activity": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE",
            "display": "create"}], "text": f"HL7 v2 {header.message_type}"},
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                 "code": "author", "display": "Author"}]},
            "who": {"identifier": {"system": SENDER_SYSTEM, "value": header.sender}, "display": sender},
        }],
        "entity": [{
            "role": "source",
            "what": {
                "identifier": {"system": MESSAGE_SYSTEM, "value": f"{header.sender}|{header.control_id}"},
                "display": f"HL7 v2 {header.message_type} {header.control_id} from {sender}",
            },
        }],
    }
    return {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": provenance,
            "request": {"method": "POST", "url": "Provenance"}}


_PIPELINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PIPELINES_GUARD = threading.Lock()


def pipeline_for(server) -> InboundPipeline:
    """The one pipeline of a server process, shared by the MLLP listener and the HTTP API so
    that a replay and a delivery from the same sender take turns."""
    with _PIPELINES_GUARD:
        pipeline = _PIPELINES.get(server)
        if pipeline is None:
            pipeline = _PIPELINES[server] = InboundPipeline(server)
            server.on_close.append(pipeline.close)
        return pipeline


class InboundChannel:
    """The pipeline for asyncio callers (the MLLP listener): ``await channel.handle(raw, peer)``.

    Messages of one sender wait for each other in arrival order (``asyncio.Lock`` wakes its
    waiters first come, first served); the blocking work runs in ``threads`` threads (the
    listener passes ``settings.mllp_threads``).
    """

    def __init__(self, pipeline: InboundPipeline, *, threads: int):
        self.pipeline = pipeline
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hl7-inbound")
        self._turns: dict[str, asyncio.Lock] = {}

    async def handle(self, raw: bytes, peer: str) -> bytes | None:
        loop = asyncio.get_running_loop()
        header = self.pipeline.read_header(raw)
        key = header.sender if header is not None else ""
        turn = self._turns.setdefault(key, asyncio.Lock())
        async with turn:
            work = functools.partial(self.pipeline.receive, raw, source=f"mllp {peer}", header=header)
            outcome = await loop.run_in_executor(self.executor, work)
        return outcome.ack

    def close(self) -> None:
        self.executor.shutdown(wait=True)

