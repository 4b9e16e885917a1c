"""Referral record documents (转诊（院）记录): FHIR -> CDA -> FHIR, import of a hand-written
document, idempotent re-import, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from adapters.public_health.cda.document_export import export_referral
from adapters.public_health.cda.document_import import import_document
from adapters.public_health.cda.parse import NS, CdaDocumentError, parse_document
from adapters.public_health.cda.referral_document import cda_to_referral
from adapters.public_health.cda.store_lookup import UnknownPatient
from fhir_server.auth.identity import SYSTEM
from fhir_server.demo import codes
from fhir_server.errors import FhirError
from fhir_server.operations.bundle import run_transaction
from tests.adapters.public_health.cda.samples import diabetes_visit

FILES = Path(__file__).parent / "files"
BASE = codes.LOCAL_BASE
DOC_SYSTEM = "urn:oid:2.16.156.10011.1.1"


def _org(server, org_id: str) -> tuple[str, str]:
    org = server.resources.read("Organization", org_id, identity=SYSTEM)
    code = next(i["value"] for i in org["identifier"] if i["system"] == codes.OID_INSTITUTION)
    return code, org["name"]


def _original_referral(server) -> tuple[dict, dict]:
    """An upward referral of 王建国 from his village clinic to the county hospital, as FHIR."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5f1e0c4e-0000-4000-8000-000000000001", "request": {"method": "POST", "url": "ServiceRequest"},
         "resource": {
             "resourceType": "ServiceRequest", "meta": codes.profile("county-referral-request"),
             "identifier": [{"system": DOC_SYSTEM, "value": "ZZ-2026-000123"}],
             "extension": [{"url": f"{BASE}/StructureDefinition/referral-direction", "valueCoding": {
                 "system": f"{BASE}/CodeSystem/referral-direction", "code": "upward", "display": "上转"}}],
             "status": "active", "intent": "order",
             "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005",
                                       "display": "Patient referral"}], "text": "转诊"}],
             "code": {"text": "心内科门诊"},
             "subject": {"reference": "Patient/pat-ph-1"},
             "authoredOn": "2026-05-12T10:00:00+08:00",
             "requester": {"reference": "Organization/org-vc-01-01"},
             "performer": [{"reference": "Organization/org-county-hospital"}],
             "reasonCode": [{"coding": [{"system": f"{BASE}/CodeSystem/referral-reason",
                                         "code": "urgent-blood-pressure"}], "text": "收缩压≥180mmHg，头痛"}],
             "note": [{"text": "转诊医生：刘春生"}, {"text": "初步印象：高血压3级"},
                      {"text": "主要病史：高血压10年，规律服用氨氯地平"}, {"text": "治疗经过：氨氯地平5mg qd"},
                      {"text": "主要检查结果：血压186/112mmHg（2026-05-12）"}],
         }},
        {"fullUrl": "urn:uuid:5f1e0c4e-0000-4000-8000-000000000002", "request": {"method": "POST", "url": "Task"},
         "resource": {
             "resourceType": "Task", "meta": codes.profile("county-referral-task"),
             "identifier": [{"system": DOC_SYSTEM, "value": "ZZ-2026-000123"}],
             "extension": [{"url": f"{BASE}/StructureDefinition/referral-direction", "valueCoding": {
                 "system": f"{BASE}/CodeSystem/referral-direction", "code": "upward", "display": "上转"}}],
             "basedOn": [{"reference": "urn:uuid:5f1e0c4e-0000-4000-8000-000000000001"}],
             "status": "requested", "intent": "order",
             "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
             "focus": {"reference": "urn:uuid:5f1e0c4e-0000-4000-8000-000000000001"},
             "for": {"reference": "Patient/pat-ph-1"},
             "authoredOn": "2026-05-12T10:00:00+08:00",
             "requester": {"reference": "Organization/org-vc-01-01"},
             "owner": {"reference": "Organization/org-county-hospital"},
         }},
    ]}
    responses = run_transaction(server, bundle, identity=SYSTEM)
    return responses[0]["resource"], responses[1]["resource"]


def _content(resource: dict) -> dict:
    """A resource without what the server assigns (id, meta.versionId/lastUpdated) and with
    references compared by target."""
    out = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    out["meta"] = {"profile": resource["meta"]["profile"]}
    return out


def _search(server, rtype: str, identifier: str) -> list[dict]:
    from adapters.public_health.patient_context import search_resources

    with server.db.read() as conn:
        return search_resources(server, conn, rtype, [("identifier", identifier)] if identifier else [], SYSTEM)


def test_referral_round_trip_fhir_cda_fhir_keeps_every_mapped_field(county):
    server = county
    request, task = _original_referral(server)
    xml = export_referral(server, request["id"])

    # the document says it in the national layout, Chinese intact
    root = parse_document(xml)
    assert root.xpath("cda:templateId/@root", namespaces=NS) == ["2.16.156.10011.2.1.1.20"]
    assert root.xpath("cda:recordTarget/cda:patientRole/cda:patient/cda:id"
                      "[@root='2.16.156.10011.1.3']/@extension", namespaces=NS) == ["43053019580314025X"]
    assert root.xpath("cda:recordTarget/cda:patientRole/cda:id[@root='2.16.156.10011.1.2']/@extension",
                      namespaces=NS) == ["43053010110100001"]
    assert root.xpath("string(cda:recordTarget/cda:patientRole/cda:patient/cda:name)", namespaces=NS) == "王建国"
    assert root.xpath("cda:recordTarget/cda:patientRole/cda:patient/cda:administrativeGenderCode/@code",
                      namespaces=NS) == ["1"]
    assert "收缩压≥180mmHg，头痛".encode() in xml and xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert cda_to_referral(root).contact == {"address_state": "湖南省", "address_city": "邵阳市",
                                             "address_county": "青山县", "address_line": "青山镇桃花村12号",
                                             "telephone": "13807390001"}

    # FHIR -> CDA -> FHIR: take the originals away, import the document, compare field by field
    server.resources.delete("Task", task["id"], identity=SYSTEM)
    server.resources.delete("ServiceRequest", request["id"], identity=SYSTEM)
    result = import_document(server, xml, what="referral.xml")
    assert result.kind == "referral" and result.status == "created" and result.document_id == "ZZ-2026-000123"

    [new_request] = _search(server, "ServiceRequest", f"{DOC_SYSTEM}|ZZ-2026-000123")
    [new_task] = _search(server, "Task", f"{DOC_SYSTEM}|ZZ-2026-000123")
    expected_request = _content(request)
    expected_request["note"] = sorted(expected_request["note"], key=lambda n: n["text"])
    got_request = _content(new_request)
    got_request["note"] = sorted(got_request["note"], key=lambda n: n["text"])
    assert got_request == expected_request
    expected_task = _content(task)
    expected_task["basedOn"] = expected_task["focus"] = None
    got_task = _content(new_task)
    assert got_task["basedOn"] == [{"reference": f"ServiceRequest/{new_request['id']}"}]
    assert got_task["focus"] == {"reference": f"ServiceRequest/{new_request['id']}"}
    got_task["basedOn"] = got_task["focus"] = None
    assert got_task == expected_task


def test_referral_reimport_changes_nothing(county):
    server = county
    request, task = _original_referral(server)
    xml = export_referral(server, request["id"])
    result = import_document(server, xml)
    assert result.status == "unchanged"
    after = server.resources.read("ServiceRequest", request["id"], identity=SYSTEM)
    assert after["meta"]["versionId"] == request["meta"]["versionId"]
    assert server.resources.read("Task", task["id"], identity=SYSTEM)["meta"]["versionId"] == task["meta"]["versionId"]
    assert len(_search(server, "ServiceRequest", f"{DOC_SYSTEM}|ZZ-2026-000123")) == 1
    assert len(_search(server, "Task", f"{DOC_SYSTEM}|ZZ-2026-000123")) == 1


def test_referral_reimport_keeps_the_receiving_sides_task_status(county):
    server = county
    request, task = _original_referral(server)
    xml = export_referral(server, request["id"])
    accepted = {**task, "status": "accepted", "businessStatus": {"text": "已接诊"}}
    server.resources.update("Task", task["id"], accepted, identity=SYSTEM)
    assert import_document(server, xml).status == "unchanged"
    assert server.resources.read("Task", task["id"], identity=SYSTEM)["status"] == "accepted"


def test_hand_written_downward_referral_is_imported_field_by_field(county):
    server = county
    hospital_code, _ = _org(server, "org-county-hospital")
    township_code, _ = _org(server, "org-th-01")
    xml = (FILES / "referral-downward.xml").read_text(encoding="utf-8")
    xml = xml.replace("{HOSPITAL}", hospital_code).replace("{TOWNSHIP}", township_code)
    result = import_document(server, xml.encode("utf-8"), what="referral-downward.xml")
    assert result.status == "created"

    [request] = _search(server, "ServiceRequest", f"{DOC_SYSTEM}|XZ-2026-0456")
    assert request["meta"]["profile"] == [f"{BASE}/StructureDefinition/county-referral-request"]
    assert request["subject"] == {"reference": "Patient/pat-ph-3"}
    assert request["authoredOn"] == "2026-06-03T15:30:00+08:00"
    assert request["requester"] == {"reference": "Organization/org-county-hospital"}
    assert request["performer"] == [{"reference": "Organization/org-th-01"}]
    assert request["extension"][0]["valueCoding"]["code"] == "downward"
    assert request["reasonCode"] == [{"coding": [{"system": f"{BASE}/CodeSystem/referral-reason",
                                                  "code": "stable-maintenance"}], "text": "血压、血糖控制平稳，转回社区管理"}]
    assert request["code"] == {"text": "乡镇卫生院慢病随访"}
    notes = {n["text"] for n in request["note"]}
    assert notes == {"转诊医生：赵文华", "初步印象：高血压2级 很高危；2型糖尿病",
                     "主要病史：住院号ZY2026000777，因血压控制不佳入院", "治疗经过：调整为氨氯地平+二甲双胍",
                     "主要检查结果：出院前血压132/84mmHg，空腹血糖6.4mmol/L",
                     "康复建议：低盐低脂饮食，每2周随访血压血糖"}
    [task] = _search(server, "Task", f"{DOC_SYSTEM}|XZ-2026-0456")
    assert task["status"] == "requested" and task["owner"] == {"reference": "Organization/org-th-01"}
    assert task["for"] == {"reference": "Patient/pat-ph-3"}


def test_referral_for_an_unknown_patient_is_refused(county):
    xml = (FILES / "referral-downward.xml").read_text(encoding="utf-8")
    xml = xml.replace("430524194907300113", "110101199003077777").replace("43053010110200003", "43053010110200999")
    with pytest.raises(UnknownPatient) as caught:
        import_document(county, xml.encode("utf-8"))
    assert caught.value.status == 422 and "no patient" in caught.value.message


def test_referral_from_an_unknown_organisation_creates_it_by_code(county):
    server = county
    township_code, _ = _org(server, "org-th-01")
    xml = (FILES / "referral-downward.xml").read_text(encoding="utf-8")
    xml = xml.replace("{HOSPITAL}", "12430000MB0000000A").replace("{TOWNSHIP}", township_code)
    import_document(server, xml.encode("utf-8"))
    [org] = _search(server, "Organization", f"{codes.OID_INSTITUTION}|12430000MB0000000A")
    assert org["name"] == "青山县人民医院" and org["active"] is True
    [request] = _search(server, "ServiceRequest", f"{DOC_SYSTEM}|XZ-2026-0456")
    assert request["requester"] == {"reference": f"Organization/{org['id']}"}
    import_document(server, xml.encode("utf-8"))  # no second organisation
    assert len(_search(server, "Organization", f"{codes.OID_INSTITUTION}|12430000MB0000000A")) == 1


def test_a_referral_without_direction_or_receiver_is_refused_with_what_is_missing():
    xml = (FILES / "referral-downward.xml").read_text(encoding="utf-8")
    root = parse_document(xml.replace("{HOSPITAL}", "x").replace("{TOWNSHIP}", "y").encode())
    for node in root.xpath("//cda:informationRecipient | //cda:observation[cda:code/@code='direction']/..",
                           namespaces=NS):
        node.getparent().remove(node)
    with pytest.raises(CdaDocumentError) as caught:
        cda_to_referral(parse_document(etree.tostring(root)), "r.xml")
    assert "receiving organisation" in caught.value.message and "direction" in caught.value.message


def test_a_corrected_referral_document_updates_the_request_and_keeps_its_status(county):
    server = county
    request, task = _original_referral(server)
    server.resources.update("ServiceRequest", request["id"], {**request, "status": "completed"}, identity=SYSTEM)
    xml = export_referral(server, request["id"]).decode("utf-8")
    corrected = xml.replace("收缩压≥180mmHg，头痛", "收缩压≥180mmHg，头痛伴视物模糊")
    assert import_document(server, corrected.encode("utf-8")).status == "updated"
    after = server.resources.read("ServiceRequest", request["id"], identity=SYSTEM)
    assert after["reasonCode"][0]["text"] == "收缩压≥180mmHg，头痛伴视物模糊"
    assert after["status"] == "completed"
    assert server.resources.read("Task", task["id"], identity=SYSTEM)["meta"]["versionId"] == task["meta"]["versionId"]


def test_the_referral_of_a_follow_up_record_exports_and_comes_back_unchanged(county):
    """The follow-up import writes a referral with the doctor's PractitionerRole as requester
    and the 转诊机构及科别 text as performer; its referral record names the doctor and the
    clinic, and importing that record changes nothing (no second ServiceRequest or Task)."""
    from adapters.public_health.follow_up_import import import_record

    server = county
    import_record(server, diabetes_visit(), SYSTEM)
    [request] = _search(server, "ServiceRequest", "")
    before = {(r["resourceType"], r["id"]): r["meta"]["versionId"]
              for r in [request, *_search(server, "Task", "")]}
    xml = export_referral(server, request["id"])
    root = parse_document(xml)
    assert root.xpath("string(//cda:receivedOrganization/cda:name)", namespaces=NS) == "县人民医院内分泌科"
    clinic_code, clinic_name = _org(server, "org-vc-01-02")
    assert root.xpath("//cda:author//cda:representedOrganization/cda:id/@extension", namespaces=NS) == [clinic_code]
    assert root.xpath("string(//cda:author//cda:assignedPerson/cda:name)", namespaces=NS)  # the doctor
    assert root.xpath("cda:id/@root", namespaces=NS) == ["2.25.326060894707537722526864241839979699372"]

    assert import_document(server, xml).status == "unchanged"
    after = {(r["resourceType"], r["id"]): r["meta"]["versionId"]
             for r in [*_search(server, "ServiceRequest", ""), *_search(server, "Task", "")]}
    assert after == before


@pytest.mark.parametrize(("old", "new", "what"), [
    ('<birthTime value="19490730"/>', '<birthTime value="19520101"/>', "birth date"),
    ('<administrativeGenderCode code="1"', '<administrativeGenderCode code="2"', "sex"),
])
def test_a_document_whose_patient_details_contradict_the_record_is_refused(county, old, new, what):
    xml = (FILES / "referral-downward.xml").read_text(encoding="utf-8")
    assert old in xml
    with pytest.raises(FhirError) as caught:
        import_document(county, xml.replace(old, new).encode("utf-8"), what="r.xml")
    assert caught.value.status == 422
    assert caught.value.message.startswith(f"r.xml: the document's {what}")
    assert _search(county, "ServiceRequest", "") == []
