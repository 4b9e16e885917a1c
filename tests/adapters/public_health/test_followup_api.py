"""``$import-followups`` and ``$export-followups`` over HTTP (real app, real token), the
CapabilityStatement, and the scopes they need."""

from __future__ import annotations

import base64
import io

import orjson
from openpyxl import load_workbook

from adapters.public_health.follow_up_bundle import resource_id
from tests.adapters.public_health.conftest import FILES
from tests.conftest import get_token, register_client

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _parameters(body: dict) -> dict:
    out: dict = {}
    for p in body["parameter"]:
        out.setdefault(p["name"], []).append(p)
    return out


def _rows(body: dict) -> list[tuple[int, str]]:
    rows = []
    for p in _parameters(body)["row"]:
        parts = {q["name"]: q for q in p["part"]}
        rows.append((parts["line"]["valueInteger"], parts["status"]["valueCode"]))
    return rows


def test_import_csv_body_answers_a_per_row_report(county, fhir):
    response = fhir.post("$import-followups?kind=hypertension", content=(FILES / "hypertension.csv").read_bytes(),
                         headers={"Content-Type": "text/csv; charset=utf-8"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Parameters"
    params = _parameters(body)
    assert params["created"][0]["valueInteger"] == 4 and params["error"][0]["valueInteger"] == 2
    assert _rows(body) == [(2, "superseded"), (3, "created"), (4, "created"), (5, "error"), (6, "superseded"),
                           (7, "error"), (8, "created"), (9, "created")]
    issues = params["outcome"][0]["resource"]["issue"]
    errors = [i for i in issues if i["severity"] == "error"]
    assert [i["expression"] for i in errors] == [["line 5"], ["line 7"]]
    assert errors[0]["diagnostics"] == "line 5: error: 随访日期: '2025-13-01' is not a date of the calendar"
    urgent = [i for i in issues if i["severity"] == "information"]
    task = f"Task/{resource_id('hypertension-43053010110100001-20250612-urgent-referral-task')}"
    assert urgent[0]["diagnostics"] == f"line 3: urgent finding, {task} created"
    assert fhir.get(task).json()["owner"]["reference"] == "Organization/org-th-01"


def test_import_binary_parameters_and_multipart(county, fhir):
    data = (FILES / "diabetes-gb18030.csv").read_bytes()
    binary = {"resourceType": "Binary", "contentType": "text/csv", "data": base64.b64encode(data).decode()}
    response = fhir.post("$import-followups?kind=diabetes", json=binary,
                         headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    assert _rows(response.json()) == [(2, "created"), (3, "created"), (4, "created"), (5, "unchanged"), (6, "error")]

    xlsx = (FILES / "hypertension-corrected.xlsx").read_bytes()
    parameters = {"resourceType": "Parameters", "parameter": [
        {"name": "kind", "valueCode": "hypertension"},
        {"name": "file", "valueAttachment": {"contentType": XLSX, "title": "corrected.xlsx",
                                             "data": base64.b64encode(xlsx).decode()}}]}
    response = fhir.post("$import-followups", json=parameters, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    assert _rows(response.json()) == [(2, "created"), (3, "created")]

    files = {"file": ("diabetes.json", (FILES / "diabetes.json").read_bytes(), "application/json")}
    response = fhir.http.post("/fhir/$import-followups", files=files, data={"kind": "diabetes"})
    assert response.status_code == 200, response.text
    assert _rows(response.json()) == [(1, "created"), (2, "created")]

    response = fhir.post("$import-followups?kind=diabetes", content=(FILES / "diabetes.json").read_bytes(),
                         headers={"Content-Type": "application/json"})
    assert _rows(response.json()) == [(1, "unchanged"), (2, "unchanged")]


def test_import_refusals(county, fhir):
    response = fhir.post("$import-followups", content=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"})
    assert response.status_code == 400
    assert "kind" in response.json()["issue"][0]["diagnostics"]
    response = fhir.post("$import-followups?kind=diabetes", content=b"PK\x03\x04 broken", headers={"Content-Type": XLSX})
    assert response.status_code == 400
    assert response.json()["issue"][0]["diagnostics"].startswith("The file cannot be read")
    response = fhir.post("$import-followups?kind=diabetes", json={"resourceType": "Patient"},
                         headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 400


def test_export_json_xlsx_csv(county, fhir):
    fhir.post("$import-followups?kind=hypertension", content=(FILES / "hypertension.csv").read_bytes(),
              headers={"Content-Type": "text/csv"})
    query = "organization=Organization/org-th-01&from=2025-01-01&to=2025-12-31"
    response = fhir.get(f"$export-followups?{query}&format=json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document = orjson.loads(response.content)
    assert [(r["resident_id"], r["visit_date"]) for r in document["hypertension"]] == [
        ("43053019580314025X", "2025-03-10"), ("43053019580314025X", "2025-06-12"),
        ("430524194907300113", "2025-06-15"), ("430524194907300113", "2025-09-01")]
    assert document["hypertension"][0]["medications"] == [{"name": "氨氯地平片", "usage": "每日1次，每次5mg"}]

    response = fhir.get(f"$export-followups?{query}&format=xlsx")
    assert response.headers["content-type"] == XLSX
    assert 'filename="followups-org-th-01-20250101-20251231.xlsx"' in response.headers["content-disposition"]
    book = load_workbook(io.BytesIO(response.content), read_only=True)
    assert book.sheetnames == ["高血压患者随访", "2型糖尿病患者随访", "检验结果", "医院就诊记录"]

    response = fhir.post(f"$export-followups?{query}&format=csv&table=hypertension")
    text = response.content.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("姓名,身份证号,健康档案编号,随访日期,随访方式,症状")
    assert len(text.splitlines()) == 5

    assert fhir.get("$export-followups?from=2025-01-01&to=2025-12-31").status_code == 400
    assert fhir.get(f"$export-followups?{query}&format=pdf").status_code == 400


def test_capability_statement_lists_the_operations(fhir):
    statement = fhir.get("metadata").json()
    operations = {o["name"]: o["definition"] for o in statement["rest"][0]["operation"]}
    assert operations["import-followups"] == "https://county-fhir.example.org/fhir/OperationDefinition/import-followups"
    assert operations["export-followups"] == "https://county-fhir.example.org/fhir/OperationDefinition/export-followups"


def test_scopes(county, app, client):
    reader, secret = register_client(app, "reader", None, "system/*.rs")
    token = get_token(client, reader, secret)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
    response = client.post("/fhir/$import-followups?kind=hypertension", content=b"x", headers=headers)
    assert response.status_code == 403
    response = client.get("/fhir/$export-followups?organization=Organization/org-th-01&from=2025-01-01&to=2025-12-31",
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    writer, secret = register_client(app, "writes only", None, "system/*.cu")
    token = get_token(client, writer, secret)
    response = client.post("/fhir/$import-followups?kind=hypertension",
                           content=(FILES / "hypertension.csv").read_bytes(),
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"})
    assert response.status_code == 403  # the import looks the patients up: it needs search too
    writer, secret = register_client(app, "no Task", None, "system/*.rs system/Encounter.cu system/Observation.cu")
    token = get_token(client, writer, secret)
    response = client.post("/fhir/$import-followups?kind=hypertension",
                           content=(FILES / "hypertension.csv").read_bytes(),
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"})
    assert response.status_code == 403  # the route needs create on every type


def test_each_row_is_checked_against_the_scopes(county, app, client):
    creator, secret = register_client(app, "create and read, no update", None, "system/*.crs")
    token = get_token(client, creator, secret)
    response = client.post("/fhir/$import-followups?kind=hypertension",
                           content=(FILES / "hypertension.csv").read_bytes(),
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"})
    assert response.status_code == 200
    rows = {p["part"][0]["valueInteger"]: {q["name"]: q for q in p["part"]}
            for p in response.json()["parameter"] if p["name"] == "row"}
    assert rows[3]["status"]["valueCode"] == "error"
    assert "do not allow update (u) on Encounter" in rows[3]["reason"]["valueString"]
