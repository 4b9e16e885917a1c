"""Audit: an AuditEvent (FHIR R4) for every read and write of patient data, every refusal and
every failed authentication.

- **Writes** are audited by ``AuditTrail.on_change``, a ``ResourceService.on_change`` hook. Just
  before the database transaction that carries the change commits, its audit record goes into
  the audit journal (``fhir_server/storage/audit_journal.py``), in that same transaction: a
  committed change always has its record, a rolled-back one has none, and a crash loses none.
  The background flush turns journal records into AuditEvents (and deletes them, in one
  transaction) within ``flush_seconds``; the next process's flush takes what a killed one left.
  Records of one caller and interaction that a flush takes together make one event, with up to
  ``MAX_RESOURCE_ENTITIES`` resources and the ``period`` from the first change to the last: a
  transaction Bundle of 100 creates gives one ``create`` event naming its patients and
  resources, and so do a client's single creates of the same second. The write itself pays
  for one short journal row, not for an AuditEvent and its index rows.
- **Reads** (read, vread, search, history, operations), **refusals** (a write refused with 403,
  a read answered 404 because the resource is outside the caller's organisation) and **failed
  authentications** (``record_failed_authentication``) are queued in memory and written by the
  same flush, every ``flush_seconds`` and at ``close()``; a read therefore never waits for the
  write lock. If the process is killed (SIGKILL, power loss) the events still queued are lost:
  at most the last ``flush_seconds`` of reads, refusals and failed logins (writes are never
  lost: their records are in the journal). Whether a read touched patient data is decided when
  the batch is written: a read of Organizations only leaves no event.
- Every authenticated caller is audited, unrestricted clients (bound to no organisation)
  included; only the server's own jobs and ``serve --no-auth`` (``identity.audited`` False) are
  not: there is no authenticated agent to record.

Each event: ``type`` rest (failed logins: DICOM 110114 User Authentication), ``subtype`` the
RESTful interaction, ``action`` C/R/U/D/E, ``recorded``, ``outcome`` 0 (success) or 4
(refused), ``agent`` the client (``who.identifier``, ``altId`` and ``name`` = the client or
user id) and its organisation (``who`` = ``Organization/<id>``), ``source`` this server,
``entity`` each patient concerned (role Patient), the resources (role Domain Resource, at most
``MAX_RESOURCE_ENTITIES``) and a search's query (role Query, base64). They are found with the
standard parameters ``patient``, ``entity``, ``agent``, ``altid`` and ``date``.

Nothing here logs resource content, names or identifiers: only counts.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from sqlalchemy import Connection

from fhir_server.auth.access import AccessPolicy, acting
from fhir_server.auth.identity import Identity
from fhir_server.search.indexer import Indexer
from fhir_server.services.resources import instant, now_utc
from fhir_server.storage import access as tables
from fhir_server.storage import audit_journal as journal
from fhir_server.storage.engine import Database, at_database_commit, transaction_state
from fhir_server.storage.ids import new_resource_id
from fhir_server.storage.store import ResourceStore

log = logging.getLogger(__name__)

AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
CLIENT_SYSTEM = "https://county-fhir.example.org/fhir/sid/client-id"
MAX_RESOURCE_ENTITIES = 100
MAX_QUEUED = 100_000
JOURNAL_BATCH = 500  # journal records per flush transaction: bounds how long it holds the write lock
_PENDING_WRITES = "audit.pending_writes"  # key in the write transaction's state
ACTIONS = {"create": "C", "read": "R", "vread": "R", "update": "U", "patch": "U", "delete": "D"}


@dataclass
class Access:
    """One audited access, before it becomes an AuditEvent."""

    subject: str | None
    organization: str | None
    interaction: str  # a restful-interaction code, or "login"
    outcome: str  # "0" success, "4" refused
    recorded: datetime
    resources: list[tuple[str, str]] = field(default_factory=list)
    patients: set[str] | None = None  # None: look them up when written
    query: str | None = None
    address: str | None = None
    description: str | None = None
    ended: datetime | None = None  # merged journal records: when the last change was committed


class AuditTrail:
    def __init__(self, db: Database, store: ResourceStore, indexer: Indexer, policy: AccessPolicy,
                 *, flush_seconds: float = 1.0, server_name: str = "county-fhir"):
        self.db = db
        self.store = store
        self.indexer = indexer
        self.policy = policy
        self.flush_seconds = flush_seconds
        self.server_name = server_name
        self._queue: list[Access] = []
        self._lock = threading.Lock()  # guards the queue
        self._flushing = threading.Lock()  # one batch written at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self._unreadable: set[int] = set()  # journal records this process could not read

    # ---- writes: in the write transaction ------------------------------------------------------
    def on_change(self, conn: Connection, before: dict | None, after: dict | None) -> None:
        identity = acting(conn)
        if not identity.audited:
            return
        patients = self.policy.patients_of(before) | self.policy.patients_of(after)
        if not patients:
            return
        current = after or before
        interaction = "create" if before is None else "delete" if after is None else "update"
        key = (identity.subject, identity.organization, interaction)
        changed = ((current["resourceType"], current["id"]), patients)
        self._pending_writes(conn).setdefault(key, []).append(changed)

    def _pending_writes(self, conn: Connection) -> dict[tuple, list]:
        """This write's audited changes by (caller, organisation, interaction)."""
        state = transaction_state(conn)
        if _PENDING_WRITES not in state:
            state[_PENDING_WRITES] = {}
            at_database_commit(conn).setdefault("audit", self._write_changes)
        return state[_PENDING_WRITES]

    def _write_changes(self, conn: Connection, writes: list[dict]) -> None:
        """The audit records of every write the database transaction carries, into the journal
        just before it commits: one record per caller and interaction."""
        merged: dict[tuple, list] = {}
        for state in writes:
            for key, changes in state.get(_PENDING_WRITES, {}).items():
                merged.setdefault(key, []).extend(changes)
        recorded = instant(now_utc())
        journal.append(conn, [orjson.dumps({
            "subject": subject, "organization": organization, "interaction": interaction, "recorded": recorded,
            "changes": [[rtype, rid, sorted(patients)] for (rtype, rid), patients in changes],
        }) for (subject, organization, interaction), changes in merged.items()])
        self._start_flushing()

    # ---- queued: reads, refusals, failed logins ------------------------------------------------
    def read(self, identity: Identity, interaction: str, resources: Iterable[tuple[str, str]],
             query: str | None = None) -> None:
        """A successful read of ``resources`` ((type, id) pairs); audited if any is patient data."""
        if not identity.audited:
            return
        self._enqueue(Access(identity.subject, identity.organization, interaction, "0", now_utc(),
                             list(dict.fromkeys(resources)), query=query))

    def refusal(self, identity: Identity, action: str, res_type: str, res_id: str,
                patients: set[str] | None = None) -> None:
        """A read or write refused because the resource is outside the caller's organisation."""
        if not identity.audited:
            return
        interaction = {"C": "create", "R": "read", "U": "update", "D": "delete"}[action]
        self._enqueue(Access(identity.subject, identity.organization, interaction, "4", now_utc(),
                             [(res_type, res_id)], patients, description="outside the caller's organisation"))

    def failed_authentication(self, client_id: str | None, reason: str, address: str | None = None) -> None:
        self._enqueue(Access(client_id, None, "login", "4", now_utc(), patients=set(), address=address,
                             description=reason))

    def _enqueue(self, access: Access) -> None:
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                self.dropped += 1
                if self.dropped % 1000 == 1:
                    log.error("audit queue full: %d events dropped so far", self.dropped)
                return
            self._queue.append(access)
        self._start_flushing()

    def _start_flushing(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="audit-flush", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the batch stays queued and is tried again
            log.exception("writing queued audit events failed; they are kept for the next try")

    def flush(self) -> int:
        """Write every queued event and every journal record as AuditEvents now; returns how
        many events were written."""
        with self._flushing:
            with self._lock:
                batch, self._queue = self._queue, []
            written = 0
            try:
                while True:
                    if not batch:
                        with self.db.read() as conn:
                            if not journal.has_records(conn, skip=self._unreadable):
                                break
                    with self.db.write() as conn:
                        taken = journal.take(conn, JOURNAL_BATCH, skip=self._unreadable)
                        self._resolve_patients(conn, batch)
                        records = self._readable(taken)
                        events = _merged_writes([record for _, record in records])
                        events += [a for a in batch if a.patients or a.interaction == "login"]
                        self._write(conn, events)
                        journal.remove(conn, [record_id for record_id, _ in records])
                    batch, written = [], written + len(events)
                    if len(taken) < JOURNAL_BATCH:
                        break
            except BaseException:
                with self._lock:
                    self._queue[:0] = batch
                raise
            log.debug("audit: %d events written", written)
            return written

    def _readable(self, taken: list[tuple[int, bytes]]) -> list[tuple[int, dict]]:
        """The journal records that can be read. One that cannot (written by another version of
        the server, damaged) stays in the journal, named in the log, and is skipped from then
        on in this process: it must not stop the records behind it."""
        readable = []
        for record_id, raw in taken:
            try:
                readable.append((record_id, _journal_record(raw)))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("audit journal record %d cannot be read (%s); it is kept and skipped",
                          record_id, type(exc).__name__)
                self._unreadable.add(record_id)
        return readable

    def close(self) -> None:
        """Stop the background thread and write what is still queued (at shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._flush_logged()

    # ---- building and storing AuditEvents -----------------------------------------------------
    def _resolve_patients(self, conn: Connection, batch: list[Access]) -> None:
        wanted: dict[str, set[str]] = defaultdict(set)
        for access in batch:
            if access.patients is None:
                for rtype, rid in access.resources:
                    wanted[rtype].add(rid)
        found = {rtype: tables.patients_of_resources(conn, rtype, sorted(ids)) for rtype, ids in wanted.items()}
        for access in batch:
            if access.patients is None:
                access.patients = set().union(*(found[t].get(i, set()) for t, i in access.resources))
                access.resources = [(t, i) for t, i in access.resources if found[t].get(i)]

    def _write(self, conn: Connection, batch: list[Access]) -> None:
        for access in batch:
            event = self.event(access)
            when = now_utc()
            event_id = new_resource_id()
            event = {"resourceType": "AuditEvent", "id": event_id,
                     "meta": {"versionId": "1", "lastUpdated": instant(when)}, **event}
            pid = self.store.insert(conn, "AuditEvent", event_id, orjson.dumps(event), when)
            self.store.write_index(conn, pid, "AuditEvent", self.store.encode(self.indexer.rows(event)), fresh=True)
            tables.set_resource_patients(conn, "AuditEvent", event_id, access.patients or (), fresh=True)

    def event(self, access: Access) -> dict:
        """The AuditEvent content (without id and meta) for one access."""
        if access.interaction == "login":
            kind = {"system": DICOM, "code": "110114", "display": "User Authentication"}
            subtype = {"system": DICOM, "code": "110122", "display": "Login"}
            action = "E"
        else:
            kind = {"system": AUDIT_TYPE, "code": "rest", "display": "RESTful Operation"}
            subtype = {"system": INTERACTION, "code": access.interaction}
            action = ACTIONS.get(access.interaction, "E")
        event: dict = {
            "type": kind, "subtype": [subtype], "action": action, "recorded": instant(access.recorded),
            "outcome": access.outcome,
        }
        if access.ended and access.ended != access.recorded:
            event["period"] = {"start": instant(access.recorded), "end": instant(access.ended)}
        if access.description:
            event["outcomeDesc"] = access.description
        event["agent"] = self._agents(access)
        event["source"] = {
            "observer": {"display": self.server_name},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        }
        entities = [_entity("Patient", p, "1", "1") for p in sorted(access.patients or ())]
        entities += [_entity(t, i, "2", "4") for t, i in access.resources[:MAX_RESOURCE_ENTITIES] if t != "Patient"]
        if access.query:
            entities.append({
                "type": {"system": ENTITY_TYPE, "code": "2"}, "role": {"system": OBJECT_ROLE, "code": "24"},
                "query": base64.b64encode(access.query.encode()).decode(),
            })
        if entities:
            event["entity"] = entities
        return event

    @staticmethod
    def _agents(access: Access) -> list[dict]:
        client: dict = {
            "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
            "requestor": True,
        }
        if access.subject:
            client["who"] = {"identifier": {"system": CLIENT_SYSTEM, "value": access.subject}}
            client["altId"] = access.subject
            client["name"] = access.subject
        if access.address:
            client["network"] = {"address": access.address, "type": "2"}
        agents = [client]
        if access.organization:
            agents.append({"who": {"reference": access.organization}, "requestor": False})
        return agents


def _entity(res_type: str, res_id: str, entity_type: str, role: str) -> dict:
    return {
        "what": {"reference": f"{res_type}/{res_id}"},
        "type": {"system": ENTITY_TYPE, "code": entity_type},
        "role": {"system": OBJECT_ROLE, "code": role},
    }


def record_failed_authentication(trail: AuditTrail, *, client_id: str | None, reason: str,
                                 address: str | None = None) -> None:
    """Audit a failed authentication (called by the token endpoint and the bearer-token check).

    ``client_id`` is the id the caller claimed (None if it gave none), ``reason`` a short text
    without secrets or tokens, ``address`` the caller's IP address. Queued like reads.
    """
    trail.failed_authentication(client_id, reason, address)


def _journal_record(raw: bytes) -> dict:
    """A journal record (as ``_write_changes`` writes it), its shape checked and its time read."""
    record = orjson.loads(raw)
    recorded = datetime.fromisoformat(record["recorded"].removesuffix("Z"))
    changes = [[str(rtype), str(rid), [str(p) for p in patients]] for rtype, rid, patients in record["changes"]]
    return {"subject": record["subject"], "organization": record["organization"],
            "interaction": str(record["interaction"]), "recorded": recorded, "changes": changes}


def _merged_writes(records: list[dict]) -> list[Access]:
    """The events of journal records (read by ``_journal_record``): one per caller and interaction, with up to
    ``MAX_RESOURCE_ENTITIES`` resources each, recorded when the first change was committed."""
    merged: dict[tuple, list[dict]] = {}
    for record in records:
        merged.setdefault((record["subject"], record["organization"], record["interaction"]), []).append(record)
    events = []
    for (subject, organization, interaction), group in merged.items():
        changes = [change for record in group for change in record["changes"]]
        first, last = group[0]["recorded"], group[-1]["recorded"]
        for part in _chunks(changes, MAX_RESOURCE_ENTITIES):
            events.append(Access(subject, organization, interaction, "0", first, [(t, i) for t, i, _ in part],
                                 set().union(*(p for _, _, p in part)), ended=last))
    return events


def _chunks(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]


__all__ = ["Access", "AuditTrail", "record_failed_authentication"]
