"""Files of follow-up records -> rows -> ``FollowUpRecord``s (or the reason a row is unusable).

Formats, told apart by the file name's suffix or, without one, by the content:

* CSV, UTF-8 (with or without BOM) or GB18030 (the encoding is detected: UTF-8 if the bytes
  decode as UTF-8, else GB18030, the superset of GBK/GB2312 that Chinese Excel writes);
  comma, tab or semicolon separated. The first row is the header row. The "line" of a row is
  its physical line in the file (a quoted cell may span lines).
* Excel ``.xlsx``: the sheet named for the form (``SHEET_NAMES``, as the export writes
  them), else the first sheet; first row headers; the "line" is the sheet row number.
* JSON: a list of objects, or an object with ``records`` (list) or with the form's kind
  (``hypertension`` / ``diabetes``, as the export writes them); keys are headers (Chinese,
  English or field names). A key ``medications`` may hold a list of {name, usage}. The
  "line" is the 1-based position in the list.

Blank cells are fine: a blank is "not recorded". A row with no value at all is skipped.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import orjson

from adapters.public_health.columns import Column, ColumnMap
from adapters.public_health.follow_up_record import FollowUpRecord, Medication, RecordError
from adapters.public_health.form_codes import code_tables
from fhir_server.identifiers import is_valid_resident_id

__all__ = ["Row", "read_rows", "to_record", "detect_format", "decode_text", "RowError"]

FORMATS = ("csv", "xlsx", "json")
# The sheet (Excel) or key (JSON) that holds each form's records in an export of this adapter
SHEET_NAMES = {"hypertension": "高血压患者随访", "diabetes": "2型糖尿病患者随访",
               "lab_results": "检验结果", "hospital_visits": "医院就诊记录"}
_DATE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*([^\d\s].*)?$")
_BP = re.compile(r"^\s*(\d{2,3})\s*[/／]\s*(\d{2,3})\s*(?:mmhg)?\s*$", re.IGNORECASE)
_HEALTH_RECORD = re.compile(r"^\d{17}$")
_EXCEL_EPOCH = date(1899, 12, 30)
_MEDICATION_LINE = re.compile(r"^medication_(\d+)_(name|usage)$")


@dataclass
class Row:
    line: int
    cells: dict[str, object]  # header -> value as read


@dataclass
class RowError:
    line: int
    reason: str


def detect_format(name: str | None, data: bytes) -> str:
    suffix = (name or "").rsplit(".", 1)[-1].lower() if name and "." in name else ""
    if suffix in ("xlsx", "xlsm"):
        return "xlsx"
    if suffix in ("json", "csv", "txt", "tsv"):
        return "json" if suffix == "json" else "csv"
    if data[:4] == b"PK\x03\x04":
        return "xlsx"
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{"):
        return "json"
    return "csv"


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 when the bytes are valid UTF-8, else GB18030."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise RecordError(f"The file is neither UTF-8 nor GB18030 text (byte {exc.start})") from None


def read_rows(data: bytes, fmt: str, kind: str | None = None) -> Iterator[Row]:
    """The rows of a file; ``kind`` picks that form's sheet / key in a file holding several."""
    if fmt == "csv":
        yield from _csv_rows(data)
    elif fmt == "xlsx":
        yield from _xlsx_rows(data, SHEET_NAMES.get(kind or ""))
    elif fmt == "json":
        yield from _json_rows(data, kind)
    else:
        raise RecordError(f"Unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _csv_rows(data: bytes) -> Iterator[Row]:
    text, _ = decode_text(data)
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample.splitlines()[0] if sample else "", delimiters=",\t;")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    headers: list[str] | None = None
    start = 1
    for values in reader:
        line, start = start, reader.line_num + 1
        if headers is None:
            headers = [h.strip() for h in values]
            continue
        if not any(v.strip() for v in values):
            continue
        yield Row(line, dict(zip(headers, values, strict=False)))


def _xlsx_rows(data: bytes, sheet_name: str | None) -> Iterator[Row]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a bad file
        raise RecordError(f"The file is not a readable .xlsx workbook ({type(exc).__name__})") from None
    try:
        sheet = book[sheet_name] if sheet_name in book.sheetnames else book.worksheets[0]
        headers: list[str] | None = None
        for number, values in enumerate(sheet.iter_rows(values_only=True), 1):
            if headers is None:
                headers = ["" if v is None else str(v).strip() for v in values]
                continue
            if all(v is None or str(v).strip() == "" for v in values):
                continue
            yield Row(number, {h: v for h, v in zip(headers, values, strict=False) if h})
    finally:
        book.close()


def _json_rows(data: bytes, kind: str | None) -> Iterator[Row]:
    try:
        document = orjson.loads(data.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"The file is not valid JSON: {exc}") from None
    items = document
    if isinstance(document, dict):
        items = document.get(kind) if kind in document else document.get("records")
    if not isinstance(items, list):
        raise RecordError("A JSON file holds a list of records, or an object with 'records'")
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise RecordError(f"Record {number} of the JSON file is not an object")
        yield Row(number, item)


# ---- a row -> a record -------------------------------------------------------------------------
def to_record(row: Row, columns: ColumnMap, source: str | None = None) -> FollowUpRecord:
    """The record of one row; ``RecordError`` naming every unusable cell when it cannot be used."""
    record = FollowUpRecord(kind=columns.kind, source=source, source_line=row.line)
    problems: list[str] = []
    medications: dict[int, dict[str, str]] = {}
    for header, value in row.cells.items():
        if header == "medications" and isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and item.get("name"):
                    record.medications.append(Medication(str(item["name"]), _text(item.get("usage"))))
            continue
        column = columns.column(header)
        if column is None or _blank(value):
            continue
        try:
            _set(record, column, value, medications)
        except RecordError as exc:
            problems.append(f"{header}: {exc}")
    for number in sorted(medications):
        line = medications[number]
        if line.get("name"):
            record.medications.append(Medication(line["name"], line.get("usage")))
        elif line.get("usage"):
            problems.append(f"用法用量{number}: a usage without a medication name")
    problems += [p for p in _required(record)
                 if not (p.startswith("随访日期") and any(q.startswith("随访日期") for q in problems))]
    if problems:
        raise RecordError("; ".join(problems))
    return record


def _required(record: FollowUpRecord) -> list[str]:
    problems = []
    if record.visit_date is None:
        problems.append("随访日期 (visit date) is missing")
    if not record.resident_id and not record.health_record_number:
        problems.append("neither 身份证号 (resident ID) nor 健康档案编号 (health-record number) is given")
    if record.resident_id and not is_valid_resident_id(record.resident_id):
        problems.append(f"身份证号 {_mask(record.resident_id)} is not a valid 18-character resident ID "
                        "(GB 11643 check digit)")
    if record.health_record_number and not _HEALTH_RECORD.match(record.health_record_number):
        problems.append(f"健康档案编号 {record.health_record_number!r} is not 17 digits")
    if record.sbp is not None and record.dbp is not None and record.sbp <= record.dbp:
        problems.append(f"收缩压 {record.sbp} is not above 舒张压 {record.dbp}")
    return problems


def _mask(resident_id: str) -> str:
    return resident_id[:6] + "*" * max(0, len(resident_id) - 10) + resident_id[-4:]


def _set(record: FollowUpRecord, column: Column, value: object,
         medications: dict[int, dict[str, str]]) -> None:
    name = column.field
    line = _MEDICATION_LINE.match(name)
    if line:
        medications.setdefault(int(line[1]), {})[line[2]] = _text(value)
        return
    if column.type == "bp":
        match = _BP.match(str(value))
        if not match:
            raise RecordError(f"{value!r} is not a blood pressure like 150/95")
        record.sbp, record.dbp = int(match[1]), int(match[2])
        return
    if column.type == "text":
        text = _text(value)
        if name == "resident_id":
            text = text.replace(" ", "").upper()
        setattr(record, name, text)
    elif column.type == "date":
        setattr(record, name, parse_date(value))
    elif column.type in ("int", "float"):
        number = parse_number(value)
        if number < 0:
            raise RecordError(f"{value!r} is negative")
        if column.type == "int":
            if number != int(number):
                raise RecordError(f"{value!r} is not a whole number")
            number = int(number)
        setattr(record, name, number)
    elif column.type == "code":
        setattr(record, name, code_tables()[column.codes].code(value))
    elif column.type == "codes":
        found, unknown = code_tables()[column.codes].codes(value)
        if unknown:  # words that are no answer of the form: the form's "其他" (other)
            record.symptoms_other = "、".join(unknown) if not record.symptoms_other else record.symptoms_other
            if "10" not in found:
                found.append("10")
        setattr(record, name, found)


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", "-", "—", "/"))


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 20000 < value < 80000:
        return _EXCEL_EPOCH + timedelta(days=int(value))  # an Excel serial day number
    text = str(value).strip()
    text = text.split("T")[0].split(" ")[0] if re.match(r"^\d{4}-\d{2}-\d{2}[T ]", text) else text
    match = _DATE.match(text) or _COMPACT_DATE.match(text)
    if not match:
        raise RecordError(f"{text!r} is not a date (expected e.g. 2025-09-18, 2025/9/18, 2025年9月18日)")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise RecordError(f"{text!r} is not a date of the calendar") from None


def parse_number(value: object) -> float:
    if isinstance(value, bool):
        raise RecordError(f"{value!r} is not a number")
    if isinstance(value, (int, float)):
        return float(value)
    match = _NUMBER.match(str(value))
    if not match:
        raise RecordError(f"{str(value).strip()!r} is not a number")
    return float(match[1])
