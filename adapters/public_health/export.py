"""Export back to the public-health system: what the server holds for an organisation's patients.

``export(server, organization, start, end)`` gives four tables for the period:

* ``hypertension`` and ``diabetes``: the follow-up records (``from_fhir``) of the patients
  the organisation manages (it and the organisations under it, ``Organization.partOf``, e.g.
  a township centre and its village clinics), whatever system wrote them, in the layout the
  importer reads (the first header of each field in ``mappings/public_health/columns.csv``);
* ``lab_results``: their laboratory Observations (not those taken at a follow-up, which are
  in the record already);
* ``hospital_visits``: their Encounters at other organisations (county hospital outpatient,
  emergency and inpatient stays), follow-ups and screenings excluded.

Writers: ``to_csv`` (one file per table; UTF-8 with BOM so that Excel opens it, or
GB18030), ``to_xlsx`` (one sheet per table), ``to_json`` (one document: the follow-up
tables use the record's field names, so the file can be imported again as it is).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date

import orjson
from sqlalchemy import Connection

from adapters.public_health.columns import Column, column_map
from adapters.public_health.follow_up_record import KINDS, FollowUpRecord
from adapters.public_health.from_fhir import FOLLOW_UP_TYPES, from_fhir, kinds_of
from adapters.public_health.patient_context import search_resources
from adapters.public_health.reading import SHEET_NAMES
from fhir_server.auth.identity import SYSTEM, Identity
from fhir_server.demo import codes

__all__ = ["Export", "Table", "export", "to_csv", "to_xlsx", "to_json", "SHEET_NAMES", "FORMATS"]

FORMATS = ("csv", "xlsx", "json")
_NOT_VISITS = set(FOLLOW_UP_TYPES) | {codes.ENCOUNTER_TYPES["screening"][0], "self-management-group-activity"}
_CHUNK = 100
LAB_HEADERS = [("name", "姓名"), ("resident_id", "身份证号"), ("health_record_number", "健康档案编号"),
               ("date", "检验日期"), ("item", "检验项目"), ("loinc", "LOINC编码"), ("value", "结果"),
               ("unit", "单位"), ("reference_range", "参考范围"), ("interpretation", "异常提示"),
               ("performer", "检验机构"), ("issued", "报告时间"), ("id", "资源标识")]
VISIT_HEADERS = [("name", "姓名"), ("resident_id", "身份证号"), ("health_record_number", "健康档案编号"),
                 ("class", "就诊类型"), ("organization", "就诊机构"), ("type", "科室或类别"),
                 ("start", "开始日期"), ("end", "结束日期"), ("reason", "就诊原因或诊断"),
                 ("status", "状态"), ("id", "资源标识")]
_CLASS_TEXT = {"IMP": "住院", "AMB": "门诊", "EMER": "急诊", "HH": "家庭", "VR": "远程", "OBSENC": "留观"}


@dataclass
class Table:
    name: str
    fields: list[str]  # field names (JSON keys)
    headers: list[str]  # column headers (CSV / Excel)
    rows: list[list[object]] = field(default_factory=list)


@dataclass
class Export:
    organization: str
    start: date
    end: date
    tables: dict[str, Table]
    records: dict[str, list[FollowUpRecord]]
    patients: list[str] = field(default_factory=list)  # Patient/<id> of every patient read


def export(server, organization: str, start: date, end: date, identity: Identity = SYSTEM) -> Export:
    if not organization.startswith("Organization/"):
        organization = f"Organization/{organization}"
    with server.db.read() as conn:
        orgs = _organization_tree(server, conn, organization, identity)
        patients = {f"Patient/{p['id']}": p for p in search_resources(
            server, conn, "Patient", [("organization", ",".join(orgs))], identity, 1_000_000)}
        encounters, labs = _of_patients(server, conn, list(patients), start, end, identity)
        records: dict[str, list[FollowUpRecord]] = {k: [] for k in KINDS}
        visits = []
        follow_up_encounters = set()
        for encounter in encounters:
            kinds = kinds_of(encounter)
            day = ((encounter.get("period") or {}).get("start") or "")[:10]
            if kinds and not start.isoformat() <= day <= end.isoformat():
                continue  # an open period overlaps the export's; the visit's day is outside it
            if kinds:
                follow_up_encounters.add(f"Encounter/{encounter['id']}")
                for kind in kinds:
                    records[kind].append(from_fhir(server, encounter, kind, identity=identity, conn=conn,
                                                   patients=patients))
            elif not _is_local(encounter, orgs) and not _types(encounter) & _NOT_VISITS:
                visits.append(encounter)
        names = _Names(server, conn, identity)
        tables = {kind: _record_table(kind, sorted(records[kind], key=_record_order)) for kind in KINDS}
        tables["lab_results"] = _lab_table(
            [o for o in labs if (o.get("encounter") or {}).get("reference") not in follow_up_encounters],
            patients, names)
        tables["hospital_visits"] = _visit_table(visits, patients, names)
    return Export(organization, start, end, tables, records, list(patients))


def _record_order(record: FollowUpRecord) -> tuple:
    return record.visit_date or date.min, record.health_record_number or "", record.resident_id or ""


def _organization_tree(server, conn: Connection, root: str, identity: Identity) -> list[str]:
    found, frontier = [root], [root]
    while frontier:
        children = search_resources(server, conn, "Organization", [("partof", ",".join(frontier))], identity, 10_000)
        frontier = [f"Organization/{c['id']}" for c in children if f"Organization/{c['id']}" not in found]
        found += frontier
    return found


def _of_patients(server, conn: Connection, patients: list[str], start: date, end: date,
                 identity: Identity) -> tuple[list[dict], list[dict]]:
    encounters, labs = [], []
    period = [("date", f"ge{start.isoformat()}"), ("date", f"le{end.isoformat()}")]
    for i in range(0, len(patients), _CHUNK):
        subjects = ",".join(patients[i:i + _CHUNK])
        encounters += search_resources(server, conn, "Encounter", [("subject", subjects), *period, ("_sort", "date")],
                                       identity, 1_000_000)
        labs += search_resources(server, conn, "Observation",
                                 [("subject", subjects), ("category", "laboratory"), *period, ("_sort", "date")],
                                 identity, 1_000_000)
    return encounters, labs


def _types(encounter: dict) -> set[str]:
    return {c.get("code") for t in encounter.get("type", []) for c in t.get("coding", [])}


def _is_local(encounter: dict, orgs: list[str]) -> bool:
    return (encounter.get("serviceProvider") or {}).get("reference") in orgs


class _Names:
    """Display names of referenced organisations, read once."""

    def __init__(self, server, conn: Connection, identity: Identity):
        self.server, self.conn, self.identity = server, conn, identity
        self.cache: dict[str, str | None] = {}

    def of(self, ref: dict | None) -> str | None:
        ref = ref or {}
        if ref.get("display"):
            return ref["display"]
        target = ref.get("reference") or ""
        if not target.startswith("Organization/"):
            return target or None
        if target not in self.cache:
            found = search_resources(self.server, self.conn, "Organization", [("_id", target.split("/")[1])],
                                     self.identity, 1)
            self.cache[target] = found[0].get("name") if found else target
        return self.cache[target]


def _person(patient: dict) -> list[object]:
    name = (patient.get("name") or [{}])[0]
    ids = {i.get("system"): i.get("value") for i in patient.get("identifier", [])}
    return [name.get("text") or (name.get("family", "") + "".join(name.get("given", []))),
            ids.get(codes.OID_RESIDENT_ID), ids.get(codes.OID_HEALTH_RECORD)]


# ---- tables ---------------------------------------------------------------------------------------
def _record_columns(kind: str, medications: int) -> list[Column]:
    out = []
    for column in column_map(kind).columns:
        if column.type == "bp":
            continue
        number = column.field.split("_")[1] if column.field.startswith("medication_") else ""
        if number.isdigit() and int(number) > medications:
            continue
        out.append(column)
    return out


def _record_table(kind: str, records: list[FollowUpRecord]) -> Table:
    medications = max([len(r.medications) for r in records] + [1])
    columns = _record_columns(kind, medications)
    table = Table(kind, [c.field for c in columns], [c.headers[0] for c in columns])
    for record in records:
        table.rows.append([_record_value(record, c.field) for c in columns])
    return table


def _record_value(record: FollowUpRecord, name: str) -> object:
    parts = name.split("_")
    if parts[0] == "medication" and len(parts) == 3 and parts[1].isdigit():
        index = int(parts[1]) - 1
        if index >= len(record.medications):
            return None
        medication = record.medications[index]
        return medication.name if parts[2] == "name" else medication.usage
    value = getattr(record, name)
    if isinstance(value, list):
        return ",".join(value) if value else None
    return value


def _lab_table(observations: list[dict], patients: dict[str, dict], names: _Names) -> Table:
    table = Table("lab_results", [f for f, _ in LAB_HEADERS], [h for _, h in LAB_HEADERS])
    for obs in observations:
        patient = patients.get((obs.get("subject") or {}).get("reference"), {})
        code = obs.get("code") or {}
        loinc = next((c.get("code") for c in code.get("coding", []) if c.get("system") == codes.LOINC), None)
        item = code.get("text") or next((c.get("display") for c in code.get("coding", [])), None)
        quantity = obs.get("valueQuantity") or {}
        value = quantity.get("value", obs.get("valueString"))
        rng = (obs.get("referenceRange") or [{}])[0]
        low, high = (rng.get("low") or {}).get("value"), (rng.get("high") or {}).get("value")
        reference_range = rng.get("text") or ("" if low is None else f"{low:g}") + (
            "-" if low is not None or high is not None else "") + ("" if high is None else f"{high:g}")
        flag = next((c.get("code") for i in obs.get("interpretation", []) for c in i.get("coding", [])), None)
        performer = names.of((obs.get("performer") or [None])[0])
        effective = obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start")
        table.rows.append([*_person(patient), effective, item, loinc, value, quantity.get("unit") or quantity.get("code"),
                           reference_range or None, flag, performer, obs.get("issued"), f"Observation/{obs['id']}"])
    return table


def _visit_table(encounters: list[dict], patients: dict[str, dict], names: _Names) -> Table:
    table = Table("hospital_visits", [f for f, _ in VISIT_HEADERS], [h for _, h in VISIT_HEADERS])
    for encounter in encounters:
        patient = patients.get((encounter.get("subject") or {}).get("reference"), {})
        klass = (encounter.get("class") or {}).get("code")
        kind = next((t.get("text") or next((c.get("display") for c in t.get("coding", [])), None)
                     for t in encounter.get("type", [])), None)
        reasons = [r.get("text") or next((c.get("display") or c.get("code") for c in r.get("coding", [])), "")
                   for r in encounter.get("reasonCode", [])]
        reasons += [d.get("condition", {}).get("display", "") for d in encounter.get("diagnosis", [])]
        period = encounter.get("period") or {}
        table.rows.append([*_person(patient), _CLASS_TEXT.get(klass, klass), names.of(encounter.get("serviceProvider")),
                           kind, period.get("start"), period.get("end"), "；".join(r for r in reasons if r) or None,
                           encounter.get("status"), f"Encounter/{encounter['id']}"])
    return table


# ---- writers --------------------------------------------------------------------------------------
def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def to_csv(table: Table, encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(table.headers)
    for row in table.rows:
        writer.writerow([_cell(v) for v in row])
    text = buffer.getvalue()
    return text.encode("utf-8-sig") if encoding.lower() in ("utf-8", "utf8") else text.encode(encoding)


def to_xlsx(result: Export) -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for name, table in result.tables.items():
        sheet = book.create_sheet(SHEET_NAMES.get(name, name))
        sheet.append(table.headers)
        for row in table.rows:
            sheet.append([None if v is None else v for v in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def to_json(result: Export) -> bytes:
    document: dict = {"organization": result.organization,
                      "period": {"start": result.start.isoformat(), "end": result.end.isoformat()}}
    for kind in KINDS:
        document[kind] = [_record_json(r) for r in result.records[kind]]
    for name in ("lab_results", "hospital_visits"):
        table = result.tables[name]
        document[name] = [{k: v for k, v in zip(table.fields, row, strict=True) if v is not None} for row in table.rows]
    return orjson.dumps(document, option=orjson.OPT_INDENT_2)


def _record_json(record: FollowUpRecord) -> dict:
    out: dict = {}
    for name in FollowUpRecord.__dataclass_fields__:
        if name in ("kind", "source", "source_line"):
            continue
        value = getattr(record, name)
        if name == "medications":
            if value:
                out["medications"] = [{"name": m.name, **({"usage": m.usage} if m.usage else {})} for m in value]
            continue
        if value is None or value == []:
            continue
        out[name] = value.isoformat() if isinstance(value, date) else (",".join(value) if isinstance(value, list)
                                                                         else value)
    return out
