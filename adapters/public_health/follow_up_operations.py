"""Follow-up records over the API: ``$import-followups`` and ``$export-followups`` (system level).

``POST [base]/$import-followups?kind=hypertension|diabetes`` takes the file as

* the body itself: ``text/csv`` (UTF-8 or GB18030), the .xlsx media type, or a JSON file
  of records (``application/json`` that is not a FHIR resource);
* a ``Binary`` (``contentType`` + base64 ``data``);
* a ``Parameters`` with ``kind`` (code) and ``file`` (an Attachment, or a Binary resource);
* ``multipart/form-data`` with the fields ``file`` and ``kind``.

Each row is written in its own transaction with the caller's identity (every resource is
checked against the caller's scopes and organisation, as transaction entries are). The answer
is 200 with a Parameters: the counts (``created``, ``updated``, ``unchanged``,
``superseded``, ``skipped``, ``error``), an ``outcome`` OperationOutcome with an issue per
row that was not written (``expression`` = ``line N``) and per urgent referral created, and
one ``row`` per row (parts ``line``, ``status``, ``reason``, ``encounter``, ``urgentTask``).
A file that cannot be read at all is a 400.

``GET|POST [base]/$export-followups?organization=Organization/X&from=YYYY-MM-DD&to=YYYY-MM-DD
&format=json|xlsx|csv`` answers the export as the file itself: JSON (``application/json``),
Excel, or for ``csv`` the table named by ``table`` (hypertension, diabetes, lab_results,
hospital_visits; default hypertension), UTF-8 with BOM, ``Content-Disposition`` naming it.

Scopes (``auth/permissions.py``): ``$import-followups`` needs create on every type at the
route (then each entry is checked), ``$export-followups`` search on every type; what is read
is read with the caller's identity.
"""

from __future__ import annotations

import base64
import binascii
from datetime import date
from email.parser import BytesParser
from email.policy import HTTP

import orjson

from adapters.public_health.export import FORMATS, export, to_csv, to_json, to_xlsx
from adapters.public_health.follow_up_import import ImportReport, import_file
from adapters.public_health.follow_up_record import KINDS, RecordError
from fhir_server.api.http import FhirRequest, FhirResponse
from fhir_server.errors import InvalidRequest
from fhir_server.operations.parameters import operation_parameters
from fhir_server.server import Server

__all__ = ["import_followups", "export_followups"]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_FHIR_JSON = ("application/fhir+json", "application/json", "application/json+fhir")
_MEDIA_FORMATS = {"text/csv": "csv", "application/csv": "csv", "text/plain": "csv", XLSX: "xlsx",
                  "application/json": "json"}


def import_followups(server: Server, request: FhirRequest) -> FhirResponse:
    kind = request.param("kind")
    data, media, name, given_kind = _file_of(request)
    kind = kind or given_kind
    if kind not in KINDS:
        raise InvalidRequest(f"$import-followups needs kind = {' or '.join(KINDS)}")
    if not data:
        raise InvalidRequest("$import-followups needs a file (the body, a Binary, or the 'file' parameter)")
    fmt = _MEDIA_FORMATS.get(media or "") if not name else None
    try:
        report = import_file(server, data, kind=kind, name=name, fmt=fmt, identity=request.identity)
    except RecordError as exc:
        raise InvalidRequest(f"The file cannot be read: {exc}") from None
    return FhirResponse(200, _report_parameters(report))


def _media(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _file_of(request: FhirRequest) -> tuple[bytes, str | None, str | None, str | None]:
    """(file bytes, media type, file name, kind) of the request, whichever way it was sent."""
    media = _media(request.header("content-type"))
    if media == "multipart/form-data":
        return _multipart(request)
    if media in _FHIR_JSON or media.endswith("+json") or media.endswith("xml"):
        document = _json_or_none(request.raw_body) if "json" in media else None
        if document is None and "xml" in media:
            document = request.body
        if isinstance(document, dict) and document.get("resourceType") == "Binary":
            return _binary(document) + (None, None)
        if isinstance(document, dict) and document.get("resourceType") == "Parameters":
            params = operation_parameters(request)
            kind = params.text("kind")
            attachment = params.get("file")
            if isinstance(attachment, dict) and attachment.get("resourceType") == "Binary":
                return _binary(attachment) + (None, kind)
            if isinstance(attachment, dict):
                data = _decode(attachment.get("data"))
                return data, _media(attachment.get("contentType")), attachment.get("title"), kind
            raise InvalidRequest("The 'file' parameter must be an Attachment or a Binary")
        if isinstance(document, dict) and "resourceType" in document:
            raise InvalidRequest(f"$import-followups takes a Binary or Parameters, not a {document['resourceType']}")
        return request.raw_body, "application/json", None, None
    return request.raw_body, media or None, None, None


def _json_or_none(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _binary(binary: dict) -> tuple[bytes, str | None]:
    return _decode(binary.get("data")), _media(binary.get("contentType"))


def _decode(data: object) -> bytes:
    try:
        return base64.b64decode(str(data or ""), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("The file's data is not base64") from None


def _multipart(request: FhirRequest) -> tuple[bytes, str | None, str | None, str | None]:
    head = f"Content-Type: {request.header('content-type')}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.raw_body)
    data, media, name, kind = b"", None, None, None
    for part in message.iter_parts():
        field = part.get_param("name", header="content-disposition")
        if field == "file":
            data = part.get_payload(decode=True) or b""
            media, name = part.get_content_type(), part.get_filename()
        elif field == "kind":
            kind = (part.get_payload(decode=True) or b"").decode("utf-8", "replace").strip()
    return data, media, name, kind


def _report_parameters(report: ImportReport) -> dict:
    issues = []
    rows = []
    for row in report.rows:
        if row.status in ("error", "skipped", "superseded"):
            issues.append({"severity": "error" if row.status == "error" else "warning",
                           "code": "invalid" if row.status == "error" else "duplicate",
                           "diagnostics": f"line {row.line}: {row.status}: {row.reason}",
                           "expression": [f"line {row.line}"]})
        if row.urgent_task:
            issues.append({"severity": "information", "code": "informational",
                           "diagnostics": f"line {row.line}: urgent finding, {row.urgent_task} created",
                           "expression": [f"line {row.line}"]})
        parts = [{"name": "line", "valueInteger": row.line}, {"name": "status", "valueCode": row.status}]
        if row.reason:
            parts.append({"name": "reason", "valueString": row.reason})
        if row.encounter:
            parts.append({"name": "encounter", "valueReference": {"reference": row.encounter}})
        if row.urgent_task:
            parts.append({"name": "urgentTask", "valueReference": {"reference": row.urgent_task}})
        parts += [{"name": "note", "valueString": note} for note in row.notes]
        rows.append({"name": "row", "part": parts})
    if not issues:
        issues.append({"severity": "information", "code": "informational",
                       "diagnostics": f"{len(report.rows)} rows, all written"})
    parameters = [{"name": status, "valueInteger": count} for status, count in report.counts.items()]
    parameters.append({"name": "outcome", "resource": {"resourceType": "OperationOutcome", "issue": issues}})
    return {"resourceType": "Parameters", "parameter": parameters + rows}


def export_followups(server: Server, request: FhirRequest) -> FhirResponse:
    params = operation_parameters(request)
    organization = params.text("organization")
    if not organization:
        raise InvalidRequest("$export-followups needs organization (Organization/<id>)")
    try:
        first = date.fromisoformat(params.text("from") or "")
        last = date.fromisoformat(params.text("to") or "")
    except ValueError:
        raise InvalidRequest("$export-followups needs from and to as dates (YYYY-MM-DD)") from None
    fmt = params.text("format") or "json"
    if fmt not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}")
    result = export(server, organization, first, last, identity=request.identity)
    server.audit.read(request.identity, "operation", [tuple(p.split("/", 1)) for p in result.patients],
                      query=f"$export-followups?organization={organization}&from={first}&to={last}")
    stem = f"followups-{organization.rsplit('/', 1)[-1]}-{first:%Y%m%d}-{last:%Y%m%d}"
    if fmt == "json":
        content, media, filename = to_json(result), "application/json; charset=utf-8", f"{stem}.json"
    elif fmt == "xlsx":
        content, media, filename = to_xlsx(result), XLSX, f"{stem}.xlsx"
    else:
        table = params.text("table") or "hypertension"
        if table not in result.tables:
            raise InvalidRequest(f"table must be one of {', '.join(result.tables)}")
        content, media, filename = to_csv(result.tables[table]), "text/csv; charset=utf-8", f"{stem}-{table}.csv"
    return FhirResponse(200, headers={"Content-Disposition": f'attachment; filename="{filename}"'},
                        content=content, content_type=media)
