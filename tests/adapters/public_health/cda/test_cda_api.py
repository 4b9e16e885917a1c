"""The CDA operations over HTTP: POST [base]/$import-cda, GET ServiceRequest|Encounter/[id]/$cda."""

from __future__ import annotations


from fastapi.testclient import TestClient

from adapters.public_health.cda.parse import NS, parse_document
from fhir_server.auth.identity import SYSTEM
from tests.adapters.public_health.cda.samples import diabetes_visit, downward_referral
from tests.conftest import get_token, register_client

XML = {"Content-Type": "application/xml"}


def _parameters(body: dict) -> dict[str, list]:
    out: dict[str, list] = {}
    for p in body["parameter"]:
        out.setdefault(p["name"], []).append(next(v for k, v in p.items() if k.startswith("value")))
    return out


def test_import_cda_writes_the_referral_and_answers_what_it_did(county, fhir):
    document = downward_referral(county)
    response = fhir.post("$import-cda", content=document, headers=XML)
    assert response.status_code == 200, response.text
    answer = _parameters(response.json())
    assert answer["kind"] == ["referral"] and answer["status"] == ["created"]
    assert answer["documentId"] == ["XZ-2026-0456"]
    written = {r["reference"].split("/")[0] for r in answer["resource"]}
    assert written == {"ServiceRequest", "Task"}

    again = fhir.post("$import-cda", content=document, headers={"Content-Type": "application/hl7-cda+xml"})
    assert _parameters(again.json())["status"] == ["unchanged"]

    bundle = fhir.search("ServiceRequest?identifier=urn:oid:2.16.156.10011.1.1|XZ-2026-0456")
    assert bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["reasonCode"][0]["text"] == "血压、血糖控制平稳，转回社区管理"


def test_service_request_cda_returns_the_document_as_utf8_xml(county, fhir):
    fhir.post("$import-cda", content=downward_referral(county), headers=XML)
    request_id = fhir.search_ids("ServiceRequest?identifier=urn:oid:2.16.156.10011.1.1|XZ-2026-0456")[0]
    response = fhir.get(f"ServiceRequest/{request_id}/$cda")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/xml; charset=utf-8"
    root = parse_document(response.content)
    assert root.xpath("string(cda:title)", namespaces=NS) == "转诊（院）记录"
    assert root.xpath("string(cda:recordTarget/cda:patientRole/cda:patient/cda:name)", namespaces=NS) == "张德明"
    assert "低盐低脂饮食，每2周随访血压血糖" in response.content.decode("utf-8")


def test_billion_laughs_is_a_400_operation_outcome(fhir):
    evil = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol2;</title></ClinicalDocument>')
    response = fhir.post("$import-cda", content=evil, headers=XML)
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"] == "The CDA document: DOCTYPE declarations are not allowed"


def test_external_entity_is_a_400_in_xml_too(fhir):
    evil = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>')
    response = fhir.post("$import-cda", content=evil, headers={**XML, "Accept": "application/fhir+xml"})
    assert response.status_code == 400
    assert b"<OperationOutcome" in response.content and b"root:" not in response.content


def test_import_cda_refuses_a_json_body_with_415(fhir):
    response = fhir.post("$import-cda", json={"resourceType": "Parameters"})
    assert response.status_code == 415
    assert "takes the CDA document itself" in response.json()["issue"][0]["diagnostics"]


def test_unknown_patient_is_422(county, fhir):
    document = downward_referral(county).replace(b"430524194907300113", b"110101199003077777") \
        .replace(b"43053010110200003", b"43053010110200999")
    response = fhir.post("$import-cda", content=document, headers=XML)
    assert response.status_code == 422
    assert "no patient" in response.json()["issue"][0]["diagnostics"]


def test_cda_of_an_unknown_service_request_is_404(fhir):
    assert fhir.get("ServiceRequest/nope/$cda").status_code == 404


def test_scopes_are_checked(app, county):
    client_id, secret = register_client(app, "reader", None, "system/*.rs")
    with TestClient(app, base_url="http://testserver") as http:
        token = get_token(http, client_id, secret)
        response = http.post("/fhir/$import-cda", content=downward_referral(county),
                             headers={**XML, "Authorization": f"Bearer {token}"})
        assert response.status_code == 403
        assert http.get("/fhir/ServiceRequest/x/$cda", headers={"Authorization": f"Bearer {token}"}).status_code == 404
        no_read_id, no_read_secret = register_client(app, "writer", None, "system/Patient.c")
        token = get_token(http, no_read_id, no_read_secret)
        assert http.get("/fhir/ServiceRequest/x/$cda",
                        headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_capability_statement_lists_the_cda_operations(fhir):
    statement = fhir.get("metadata").json()
    rest = statement["rest"][0]
    assert "import-cda" in {o["name"] for o in rest["operation"]}
    resources = {r["type"]: r for r in rest["resource"]}
    for rtype in ("Encounter", "ServiceRequest"):
        assert "cda" in {o["name"] for o in resources[rtype].get("operation", [])}
    assert "cda" not in {o["name"] for o in resources["Patient"].get("operation", [])}


def test_encounter_cda_returns_the_follow_up_document(county, fhir):
    from adapters.public_health.follow_up_import import import_record

    encounter = import_record(county, diabetes_visit(), SYSTEM).encounter
    response = fhir.get(f"{encounter}/$cda")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/xml; charset=utf-8"
    root = parse_document(response.content)
    assert root.xpath("cda:templateId/@root", namespaces=NS) == ["2.16.156.10011.2.1.1.13"]
    assert root.xpath("//cda:observation[cda:code/@code='fasting_glucose']/cda:value/@value", namespaces=NS) == ["8.2"]
    wrong = fhir.get(f"{encounter}/$cda", params={"kind": "hypertension-follow-up"})
    assert wrong.status_code == 400
    assert "not a hypertension-follow-up" in wrong.json()["issue"][0]["diagnostics"]
    # the same document posted back changes nothing
    again = fhir.post("$import-cda", content=response.content, headers=XML)
    assert _parameters(again.json())["status"] == ["unchanged"]


def test_a_village_clinic_client_imports_and_reads_only_its_own_patients(app, county):
    """A client bound to 王建国's village clinic cannot import or read 张德明's referral."""
    client_id, secret = register_client(app, "village clinic 01-01", "Organization/org-vc-01-01", "system/*.cruds")
    with TestClient(app, base_url="http://testserver") as http:
        headers = {"Authorization": f"Bearer {get_token(http, client_id, secret)}"}
        response = http.post("/fhir/$import-cda", content=downward_referral(county), headers={**XML, **headers})
        assert response.status_code == 422
        assert "no patient" in response.json()["issue"][0]["diagnostics"]
    from adapters.public_health.cda.document_import import import_document

    import_document(county, downward_referral(county))  # written by a trusted adapter
    request_id = _request_id(county, "XZ-2026-0456")
    with TestClient(app, base_url="http://testserver") as http:
        headers = {"Authorization": f"Bearer {get_token(http, client_id, secret)}"}
        assert http.get(f"/fhir/ServiceRequest/{request_id}/$cda", headers=headers).status_code == 404


def _request_id(server, document_id: str) -> str:
    from adapters.public_health.patient_context import search_resources

    with server.db.read() as conn:
        [request] = search_resources(server, conn, "ServiceRequest",
                                     [("identifier", f"urn:oid:2.16.156.10011.1.1|{document_id}")], SYSTEM)
    return request["id"]
