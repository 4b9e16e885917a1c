"""Import a file of follow-up records: one transaction per record, a report line per row.

``import_file(server, data, name=..., kind=...)`` reads the file (``reading``), turns each
row into a record, each record into a Bundle (``follow_up_bundle``) and runs it with
``run_transaction``. A row that cannot be used is reported with its line and the reason,
and the rest of the file still goes in. Every row is one of:

* ``created``: the visit was new;
* ``updated``: the visit was known and something changed (a corrected row);
* ``unchanged``: the visit was known and nothing changed (a re-import, a duplicate row);
* ``skipped``: the visit is already recorded by another system;
* ``superseded``: a later row of the same file records the same visit (same patient, day and
  form) differently, so the later row (a correction) is the one written; a row identical to
  an earlier one is ``unchanged`` ("same as line N") and not written again;
* ``error``: the row cannot be used (the reason says why); nothing of it was written.
"""

from __future__ import annotations

import logging
import multiprocessing
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

from adapters.public_health.columns import ColumnMap, column_map
from adapters.public_health.follow_up_bundle import FollowUpBundle, build
from adapters.public_health.follow_up_record import FollowUpRecord, RecordError
from adapters.public_health.patient_context import ImportCache, OrganizationCache
from adapters.public_health.reading import Row, decode_text, detect_format, read_rows, to_record
from adapters.public_health.urgent_referral import DEFAULT_THRESHOLDS, Thresholds
from fhir_server.auth.identity import SYSTEM, Identity
from fhir_server.demo import codes
from fhir_server.errors import FhirError
from fhir_server.operations.bundle import run_transaction
from fhir_server.services.resources import now_utc

__all__ = ["RowResult", "ImportReport", "import_file", "import_record", "write_records", "STATUSES"]

log = logging.getLogger(__name__)
GROUP_SIZE = 50
STATUSES = ("created", "updated", "unchanged", "superseded", "skipped", "error")


@dataclass
class RowResult:
    line: int
    status: str
    reason: str | None = None  # for error / skipped
    encounter: str | None = None  # Encounter/<id>
    urgent_task: str | None = None  # Task/<id>, when this row created the urgent-referral Task
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    source: str | None
    kind: str
    format: str
    encoding: str | None = None
    rows: list[RowResult] = field(default_factory=list)
    unknown_headers: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counter = Counter(r.status for r in self.rows)
        return {status: counter.get(status, 0) for status in STATUSES}


def import_record(server, record: FollowUpRecord, identity: Identity = SYSTEM,
                  organizations: OrganizationCache | None = None,
                  thresholds: Thresholds = DEFAULT_THRESHOLDS, *, care_plan: bool = True) -> RowResult:
    """Write one record in one transaction; errors become an ``error`` result, never raised."""
    built = _build(server, record, identity, organizations, thresholds, care_plan)
    if isinstance(built, RowResult):
        return built
    return _write(server, [(record, built)], identity, organizations)[0]


def _build(server, record: FollowUpRecord, identity: Identity, organizations: OrganizationCache | None,
           thresholds: Thresholds, care_plan: bool) -> FollowUpBundle | RowResult:
    line = record.source_line or 0
    try:
        with server.db.read() as conn:
            return build(server, conn, record, identity, organizations, thresholds, care_plan=care_plan)
    except RecordError as exc:
        status = "skipped" if "already recorded by another system" in str(exc) else "error"
        return RowResult(line, status, str(exc))
    except FhirError as exc:
        return RowResult(line, "error", _fhir_reason(exc))


def _write(server, group: list[tuple[FollowUpRecord, FollowUpBundle]], identity: Identity,
           organizations: OrganizationCache | None) -> list[RowResult]:
    """Run the Bundles of ``group`` in one database transaction (each record whole, the records
    of different patients); when it fails, run each on its own so that only a bad one fails."""
    started = now_utc()  # to the millisecond, as lastUpdated: a version stamped in this millisecond is ours
    entries = [entry for _, built in group for entry in built.bundle["entry"]]
    if not entries:  # every record is stored exactly so already
        return [_result(record.source_line or 0, built, [], started) for record, built in group]
    try:
        responses = run_transaction(server, {"resourceType": "Bundle", "type": "transaction", "entry": entries},
                                    identity=identity)
    except FhirError as exc:
        if len(group) == 1:
            return [RowResult(group[0][0].source_line or 0, "error", _fhir_reason(exc))]
        return [result for one in group for result in _write(server, [one], identity, organizations)]
    if isinstance(organizations, ImportCache):
        organizations.learn(responses)
    results, at = [], 0
    for record, built in group:
        count = len(built.bundle["entry"])
        results.append(_result(record.source_line or 0, built, responses[at:at + count], started))
        at += count
    return results


def _result(line: int, built: FollowUpBundle, responses: list[dict], started: datetime) -> RowResult:
    encounter_status = next((r["response"]["status"] for r in responses
                             if (r.get("resource") or {}).get("resourceType") == "Encounter"
                             and r["resource"].get("id") == built.encounter_id), "")
    changed = False
    for response in responses:
        status = response["response"]["status"]
        if status.startswith(("201", "204")):
            changed = True
            break
        updated = ((response.get("resource") or {}).get("meta") or {}).get("lastUpdated")
        if updated and datetime.fromisoformat(updated.removesuffix("Z")) >= started:
            changed = True
            break
    status = "created" if encounter_status.startswith("201") else "updated" if changed else "unchanged"
    urgent = f"Task/{built.urgent_task_id}" if built.urgent_task_id and status != "unchanged" else None
    return RowResult(line, status, None, f"Encounter/{built.encounter_id}", urgent, list(built.notes))


def _visit_key(record: FollowUpRecord) -> tuple:
    return record.kind, record.resident_id or record.health_record_number, record.visit_date


def _same(a: FollowUpRecord, b: FollowUpRecord) -> bool:
    return replace(a, source_line=None) == replace(b, source_line=None)


def _last_of_each_visit(records: list) -> dict[tuple, FollowUpRecord]:
    last: dict[tuple, FollowUpRecord] = {}
    for item in records:
        if isinstance(item, FollowUpRecord):
            last[_visit_key(item)] = item
    return last


def _fhir_reason(exc: FhirError) -> str:
    texts = [i.diagnostics for i in exc.issues if i.diagnostics] or [exc.message]
    return "the server refused the record: " + "; ".join(texts[:5])


def import_file(server, data: bytes, *, kind: str, name: str | None = None, fmt: str | None = None,
                columns: ColumnMap | None = None, column_map_file: Path | None = None,
                identity: Identity = SYSTEM, thresholds: Thresholds = DEFAULT_THRESHOLDS,
                progress: Callable[[int, int], None] | None = None, group_size: int = GROUP_SIZE,
                workers: int = 1) -> ImportReport:
    """Import every row of a file; ``progress(done, total)`` is called as rows are done.

    Records of different patients are written ``group_size`` at a time in one database
    transaction (each record whole); a group that fails is written again record by record,
    so a bad record fails alone. ``workers`` > 1 writes the patients' records in that many
    processes (each patient's records in one of them, in file order): the checks of a write
    run before its database transaction, so they overlap; the writes themselves queue.
    """
    fmt = fmt or detect_format(name, data)
    columns = columns or column_map(kind, column_map_file)
    report = ImportReport(name, kind, fmt)
    if fmt == "csv":
        report.encoding = decode_text(data)[1]
    rows: list[Row] = list(read_rows(data, fmt, kind))
    headers = {h for row in rows for h in row.cells}
    report.unknown_headers = sorted(h for h in headers if h != "medications" and columns.column(h) is None)
    records: list[FollowUpRecord | RowResult] = []
    for row in rows:
        try:
            records.append(to_record(row, columns, name))
        except RecordError as exc:
            records.append(RowResult(row.line, "error", str(exc)))
    results, to_write = _plan(records)
    if workers > 1 and len(to_write) > group_size:
        results.update(_write_in_processes(server, to_write, identity, thresholds, group_size, workers))
        if progress is not None:
            progress(len(records), len(records))
    else:
        done = len(results)

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, len(records))

        results.update(write_records(server, to_write, identity, thresholds, group_size, tick))
    report.rows = [results[i] for i in range(len(records))]
    log.info("follow-up import of %s (%s): %s", name or "a file", kind, report.counts)
    return report


WriteItem = tuple[int, FollowUpRecord, bool]  # (row index, record, whether it updates the CarePlan)


def _plan(records: list[FollowUpRecord | RowResult]) -> tuple[dict[int, RowResult], list[WriteItem]]:
    """The rows settled without writing (unusable, duplicates, superseded) and the records to write."""
    usable = [r for r in records if isinstance(r, FollowUpRecord)]
    latest: dict[str, date] = {}  # the latest visit of each patient (as the file names them)
    for record in usable:
        for person in (record.resident_id, record.health_record_number):
            if person and record.visit_date > latest.get(person, date.min):
                latest[person] = record.visit_date
    last = _last_of_each_visit(records)
    first_seen: dict[tuple, FollowUpRecord] = {}
    settled: dict[int, RowResult] = {}
    to_write: list[WriteItem] = []
    for index, item in enumerate(records):
        if isinstance(item, RowResult):
            settled[index] = item
            continue
        key = _visit_key(item)
        earlier = first_seen.get(key)
        if earlier is not None and _same(earlier, item):
            settled[index] = RowResult(item.source_line or 0, "unchanged", f"same as line {earlier.source_line}")
        elif last[key] is not item and not _same(last[key], item):
            settled[index] = RowResult(item.source_line or 0, "superseded",
                                       f"line {last[key].source_line} records this visit again and is the one written")
        else:
            first_seen.setdefault(key, item)
            # a later visit of the same patient in this file updates the CarePlan
            plan = all(item.visit_date >= latest[p] for p in (item.resident_id, item.health_record_number) if p)
            to_write.append((index, item, plan))
    return settled, to_write


def write_records(server, items: list[WriteItem], identity: Identity, thresholds: Thresholds,
                  group_size: int = GROUP_SIZE, tick: Callable[[], None] | None = None) -> dict[int, RowResult]:
    """Write records in file order, ``group_size`` patients' records per database transaction."""
    cache = ImportCache()
    with server.db.read() as conn:
        cache.prefetch(server, conn, [record for _, record, _ in items], identity)
    results: dict[int, RowResult] = {}
    pending: list[tuple[int, FollowUpRecord, FollowUpBundle]] = []
    people: set[str] = set()  # identifiers of the patients with a pending record

    def flush() -> None:
        written = _write(server, [(record, built) for _, record, built in pending], identity, cache)
        for (index, _, _), result in zip(pending, written, strict=True):
            results[index] = result
            if tick is not None:
                tick()
        pending.clear()
        people.clear()

    for index, record, plan in items:
        mine = {p for p in (record.resident_id, record.health_record_number) if p}
        if mine & people:
            flush()  # this record builds on what the pending one of the same patient writes
        built = _build(server, record, identity, cache, thresholds, plan)
        if isinstance(built, RowResult):
            results[index] = built
            if tick is not None:
                tick()
            continue
        pending.append((index, record, built))
        people.update(mine)
        people.update(i.get("value") for i in built.context.patient.get("identifier", []))
        if len(pending) >= group_size:
            flush()
    if pending:
        flush()
    return results


def _write_in_processes(server, items: list[WriteItem], identity: Identity, thresholds: Thresholds,
                        group_size: int, workers: int) -> dict[int, RowResult]:
    """``write_records`` in ``workers`` processes, each patient's records in one of them."""
    cache = ImportCache()
    with server.db.read() as conn:
        cache.find_patients(server, conn, [record for _, record, _ in items], identity)
    parts: list[list[WriteItem]] = [[] for _ in range(workers)]
    for item in items:
        record = item[1]
        patient = cache.patients.get((codes.OID_RESIDENT_ID, record.resident_id or "")) or \
            cache.patients.get((codes.OID_HEALTH_RECORD, record.health_record_number or "")) or {}
        person = patient.get("id") or record.resident_id or record.health_record_number or ""
        parts[zlib.crc32(person.encode()) % workers].append(item)
    settings = server.settings.model_dump()
    system = identity is SYSTEM
    results: dict[int, RowResult] = {}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_write_part, settings, None if system else identity, part, thresholds, group_size)
                   for part in parts if part]
        for future in futures:
            results.update(future.result())
    return results


def _write_part(settings: dict, identity: Identity | None, items: list[WriteItem], thresholds: Thresholds,
                group_size: int) -> dict[int, RowResult]:
    from fhir_server.server import start_server
    from fhir_server.settings import Settings

    server = start_server(Settings(**settings))
    try:
        return write_records(server, items, identity or SYSTEM, thresholds, group_size)
    finally:
        server.close()
