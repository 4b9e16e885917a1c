"""REF^I12 (referral with diagnosis and results) and OUL^R22 / R24 (laboratory), stored and read back."""

from __future__ import annotations

from adapters.hl7v2.translate import translate
from fhir_server.auth.identity import SYSTEM
from fhir_server.operations.bundle import run_transaction

REQUEST_PROFILE = "https://county-fhir.example.org/fhir/StructureDefinition/county-referral-request"
TASK_PROFILE = "https://county-fhir.example.org/fhir/StructureDefinition/county-referral-task"


def stored(server, translation) -> dict[str, list[dict]]:
    assert translation.status == "AA", translation.problems
    result: dict[str, list[dict]] = {}
    for entry in run_transaction(server, translation.bundle, identity=SYSTEM):
        resource = entry["resource"]
        result.setdefault(resource["resourceType"], []).append(
            server.resources.read(resource["resourceType"], resource["id"], identity=SYSTEM))
    return result


REF = "\r".join([
    "MSH|^~\\&|THIS|城关镇卫生院|FHIR|县人民医院|20260512100000||REF^I12^REF_I12|R0001|P|2.5|||||CHN|UNICODE UTF-8",
    "RF1|P^待处理|U^紧急|UP^上转^99REF||O|REF2026001^THIS||20260512100000||血压危急值|",
    "PRD|RP|城关镇卫生院|||||124305304940557646",
    "PRD|RT|县人民医院|||||12430530491141704B",
    "PID|1||T0099^^^^PI~430530197201219824^^^^NNCHN||王^秀英||19720121|2",
    "DG1|1||I10^原发性高血压^I10|||W",
    "NTE|1||初步印象：高血压3级；既往史：高血压10年；治疗经过：氨氯地平5mg qd",
    "OBR|1||BP20260512001|BP^血压^L|||20260512093000",
    "OBX|1|NM|SBP^收缩压^L||185|mmHg|90-139|H|||F",
]) + "\r"


def test_ref_i12_writes_referral_task_condition_and_results(server):
    translation = translate(REF.encode(), server)
    result = stored(server, translation)
    [request] = result["ServiceRequest"]
    [task] = result["Task"]
    [condition] = result["Condition"]
    patient = result["Patient"][0]
    organizations = {o["identifier"][0]["value"]: o for o in result["Organization"]}
    assert request["meta"]["profile"] == [REQUEST_PROFILE]
    assert request["extension"][0]["valueCoding"]["code"] == "upward"
    assert request["status"] == "active" and request["intent"] == "order"
    assert request["priority"] == "urgent"
    assert request["reasonCode"][0]["coding"][0]["code"] == "urgent-blood-pressure"
    assert request["reasonCode"][0]["text"] == "血压危急值"
    assert request["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert request["requester"] == {"reference": f"Organization/{organizations['124305304940557646']['id']}"}
    assert request["performer"] == [{"reference": f"Organization/{organizations['12430530491141704B']['id']}"}]
    assert request["reasonReference"] == [{"reference": f"Condition/{condition['id']}"}]
    assert request["note"][0]["text"].startswith("初步印象：高血压3级")
    assert request["authoredOn"] == "2026-05-12T10:00:00+08:00"
    observation = result["Observation"][0]
    assert request["supportingInfo"] == [{"reference": f"Observation/{observation['id']}"}]
    assert observation["valueQuantity"]["code"] == "mm[Hg]"
    assert condition["code"]["coding"][0] == {"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10",
                                              "display": "原发性高血压"}
    assert condition["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert task["meta"]["profile"] == [TASK_PROFILE]
    assert task["status"] == "requested"
    assert task["focus"] == {"reference": f"ServiceRequest/{request['id']}"}
    assert task["owner"] == request["performer"][0]
    assert task["for"] == request["subject"]
    # the hospital accepts: the same referral number updates both
    accepted = REF.replace("RF1|P^待处理", "RF1|A^已接诊").replace("R0001", "R0002")
    again = stored(server, translate(accepted.encode(), server))
    assert again["Task"][0]["id"] == task["id"] and again["Task"][0]["status"] == "accepted"
    assert again["ServiceRequest"][0]["id"] == request["id"]


OUL_R22 = "\r".join([
    "MSH|^~\\&|LIS|县人民医院|FHIR|CHN|20260512153000||OUL^R22^OUL_R22|L0001|P|2.5.1|||AL|NE||UNICODE UTF-8",
    "PID|1||ZY0001^^^^MR~430530197201219824^^^^NNCHN||王^秀英||19720121|2",
    "SPM|1|^S2026051201&LIS||BLD^全血^HL70487|||||||||||||20260512080000",
    "OBR|1||H2026051201|HBA1C^糖化血红蛋白^L|||20260512080000",
    "OBX|1|NM|HBA1C^糖化血红蛋白^L||7.2|%|4.0-6.0|H|||F",
    "SPM|2|^S2026051202&LIS||SER^血清^HL70487|||||||||||||20260512080000",
    "OBR|2||B2026051202|LIPID^血脂^L|||20260512080000",
    "OBX|1|NM|TC^总胆固醇^L||5.9|mmol/L|<5.2|H|||F",
    "OBX|2|NM|LDL-C^低密度脂蛋白胆固醇^L||3.6|mmol/L|<3.4|H|||F",
]) + "\r"


def test_oul_r22_specimen_groups_apply_to_the_orders_after_them(server):
    result = stored(server, translate(OUL_R22.encode(), server))
    specimens = {s["identifier"][0]["value"]: s["id"] for s in result["Specimen"]}
    reports = {r["identifier"][0]["value"]: r for r in result["DiagnosticReport"]}
    assert reports["H2026051201"]["specimen"] == [{"reference": f"Specimen/{specimens['S2026051201']}"}]
    assert reports["B2026051202"]["specimen"] == [{"reference": f"Specimen/{specimens['S2026051202']}"}]
    assert len(reports["B2026051202"]["result"]) == 2
    ldl = next(o for o in result["Observation"] if o["code"]["coding"][0]["code"] == "22748-8")
    assert ldl["specimen"] == {"reference": f"Specimen/{specimens['S2026051202']}"}


def test_oul_r24_specimen_inside_the_order(server):
    r24 = "\r".join([
        "MSH|^~\\&|LIS|县人民医院|FHIR|CHN|20260512153000||OUL^R24^OUL_R24|L0002|P|2.5.1",
        "PID|1||ZY0001^^^^MR~430530197201219824^^^^NNCHN||王^秀英||19720121|2",
        "OBR|1||C2026051201|CREA^肌酐^L|||20260512080000",
        "SPM|1|^S3&LIS||SER^血清^HL70487",
        "OBX|1|NM|CREA^肌酐^L||88|umol/L|44-133|N|||F",
    ]) + "\r"
    result = stored(server, translate(r24.encode(), server))
    assert result["Observation"][0]["specimen"]["reference"] == f"Specimen/{result['Specimen'][0]['id']}"
    assert result["Observation"][0]["valueQuantity"]["value"] == 88
