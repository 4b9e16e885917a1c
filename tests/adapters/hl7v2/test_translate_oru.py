"""ORU^R01 -> DiagnosticReport, Observations, Specimen, lab Organization: stored and read back."""

from __future__ import annotations

import pytest

from adapters.hl7v2.translate import translate
from fhir_server.auth.identity import SYSTEM
from fhir_server.operations.bundle import run_transaction

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"
LAB_RESULT = "https://county-fhir.example.org/fhir/StructureDefinition/county-lab-result"
REPORT = "https://county-fhir.example.org/fhir/StructureDefinition/county-diagnostic-report"

MSH = "MSH|^~\\&|LIS|县人民医院|FHIR|CHN|20260512153000||ORU^R01^ORU_R01|{control}|P|2.5|||AL|NE||UNICODE UTF-8"
PID = ("PID|1||ZY2026000123^^^XRMYY^MR~430530197201219824^^^^NNCHN||王^秀英||19720121|2|||"
       "柳冲镇上垅村6组42号^^邵阳市^湖南省^^CN^H^^青山县||13800001111")


def oru(*segments: str, control: str = "MSG0001", msh: str = MSH) -> bytes:
    return ("\r".join([msh.format(control=control), *segments]) + "\r").encode("utf-8")


FIVE_RESULTS = [
    PID,
    "ORC|RE|PL20260512001|FL20260512001",
    "OBR|1|PL20260512001|FL20260512001|BIOCHEM^生化检验^L|||20260512083000|||||||||||||||20260512150000|||F",
    "OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|↑|||F|||20260512083000||1001^李^明",
    "OBX|2|NM|HBA1C^糖化血红蛋白^L||7.2|%|4.0-6.0|H|||F",
    "OBX|3|SN|GLU-R^随机血糖^L||>^16.7|mmol/L|3.9-11.1|1|||F",
    "OBX|4|ST|TC^总胆固醇^L||5.6|mmol/L|<5.2|H|||F",
    "OBX|5|NM|GLU-2H^餐后2小时血糖^L||9.1|mmol/L|<7.8|H|||F",
    "NTE|1||复查建议\\.br\\空腹复查",
    "SPM|1|SP001&LIS^SP001F&LIS||SER^血清^HL70487|||||||||||||20260512083000",
]


def store(server, translation) -> dict[str, list[dict]]:
    """Run the translation's Bundle and return the stored resources by type."""
    assert translation.status == "AA", translation.problems
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in translation.bundle["entry"])
    entries = run_transaction(server, translation.bundle, identity=SYSTEM)
    stored: dict[str, list[dict]] = {}
    for entry in entries:
        resource = server.resources.read(entry["resource"]["resourceType"], entry["resource"]["id"], identity=SYSTEM)
        stored.setdefault(resource["resourceType"], []).append(resource)
    return stored


def by_code(observations: list[dict], local: str) -> dict:
    return next(o for o in observations if any(c["code"] == local for c in o["code"]["coding"]))


def test_oru_r01_stores_report_results_specimen_lab_and_patient(server):
    translation = translate(oru(*FIVE_RESULTS), server)
    stored = store(server, translation)

    patient = stored["Patient"][0]
    assert patient["name"][0]["text"] == "王秀英"
    assert patient["gender"] == "female"
    assert patient["birthDate"] == "1972-01-21"
    assert {"system": RESIDENT_ID, "value": "430530197201219824"}.items() <= patient["identifier"][1].items() or \
        any(i["system"] == RESIDENT_ID and i["value"] == "430530197201219824" for i in patient["identifier"])

    lab = stored["Organization"][0]
    assert lab["name"] == "青山县人民医院检验科"
    assert lab["identifier"][0] == {"use": "official", "system": "urn:oid:2.16.156.10011.1.5",
                                    "value": "12430530491141704B-30"}

    observations = stored["Observation"]
    assert len(observations) == 5
    glucose = by_code(observations, "GLU")
    assert glucose["code"]["coding"][0] == {"system": LOINC, "code": "14771-0",
                                            "display": "Fasting glucose [Moles/volume] in Serum or Plasma"}
    assert glucose["code"]["coding"][1]["code"] == "GLU"  # the local coding is kept
    assert glucose["code"]["text"] == "空腹血糖"
    assert glucose["valueQuantity"] == {"value": 7.8, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}
    assert glucose["referenceRange"][0]["low"]["value"] == 3.9
    assert glucose["referenceRange"][0]["high"]["value"] == 6.1
    assert glucose["interpretation"][0]["coding"][0]["code"] == "H"
    assert glucose["interpretation"][0]["text"] == "↑"
    assert glucose["status"] == "final"
    assert glucose["effectiveDateTime"] == "2026-05-12T08:30:00+08:00"
    assert glucose["issued"] == "2026-05-12T15:00:00+08:00"
    assert glucose["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert glucose["performer"][0] == {"reference": f"Organization/{lab['id']}"}
    assert glucose["performer"][1]["display"] == "李明"
    assert glucose["specimen"]["reference"] == f"Specimen/{stored['Specimen'][0]['id']}"
    assert glucose["meta"]["profile"] == [LAB_RESULT]

    hba1c = by_code(observations, "HBA1C")
    assert hba1c["code"]["coding"][0]["code"] == "4548-4"
    assert hba1c["valueQuantity"]["code"] == "%"

    random_glucose = by_code(observations, "GLU-R")
    assert random_glucose["valueQuantity"] == {"value": 16.7, "comparator": ">", "unit": "mmol/L",
                                               "system": UCUM, "code": "mmol/L"}
    assert random_glucose["interpretation"][0]["coding"][0]["code"] == "H"  # flag "1"

    cholesterol = by_code(observations, "TC")  # a number sent as ST
    assert cholesterol["valueQuantity"]["value"] == 5.6
    assert cholesterol["referenceRange"][0]["high"]["value"] == 5.2
    assert "low" not in cholesterol["referenceRange"][0]

    unmapped = by_code(observations, "GLU-2H")  # no LOINC in the ConceptMap: local coding only
    assert [c["code"] for c in unmapped["code"]["coding"]] == ["GLU-2H"]
    assert "meta" not in unmapped or LAB_RESULT not in unmapped["meta"].get("profile", [])
    assert unmapped["note"] == [{"text": "复查建议\n空腹复查"}]

    report = stored["DiagnosticReport"][0]
    assert report["status"] == "final"
    assert report["code"]["coding"][0]["code"] == "11502-2"  # fallback LOINC, the panel code kept
    assert report["code"]["coding"][1]["code"] == "BIOCHEM"
    assert {i["value"] for i in report["identifier"]} == {"PL20260512001", "FL20260512001"}
    assert len(report["result"]) == 5
    assert report["meta"]["profile"] == [REPORT]
    assert report["specimen"][0]["reference"] == f"Specimen/{stored['Specimen'][0]['id']}"

    specimen = stored["Specimen"][0]
    assert specimen["type"]["coding"][0]["code"] == "SER"
    assert specimen["identifier"][0]["value"] == "SP001F"

    warnings = [p for p in translation.problems if p.severity == "W"]
    assert [(p.segment, p.sequence, p.field, p.code) for p in warnings] == [("OBX", 5, 3, "103")]


def test_unmapped_code_is_a_warning_with_aa(server):
    translation = translate(oru(*FIVE_RESULTS), server)
    assert translation.status == "AA"
    warning = next(p for p in translation.problems if p.code == "103")
    assert warning.severity == "W"
    assert "GLU-2H" in warning.text


def test_redelivery_and_correction_replace_the_stored_result(server):
    first = store(server, translate(oru(*FIVE_RESULTS), server))
    glucose_id = by_code(first["Observation"], "GLU")["id"]
    corrected = [s.replace("|7.8|mmol/L|3.9-6.1|↑|||F|", "|6.0|mmol/L|3.9-6.1|N|||C|") for s in FIVE_RESULTS]
    second = store(server, translate(oru(*corrected, control="MSG0002"), server))
    glucose = by_code(second["Observation"], "GLU")
    assert glucose["id"] == glucose_id
    assert glucose["status"] == "corrected"
    assert glucose["valueQuantity"]["value"] == 6.0
    assert glucose["meta"]["versionId"] == "2"
    assert second["DiagnosticReport"][0]["id"] == first["DiagnosticReport"][0]["id"]
    assert "Patient" not in second  # the stored patient is found by resident ID and referenced
    assert glucose["subject"] == {"reference": f"Patient/{first['Patient'][0]['id']}"}
    assert second["Organization"][0]["id"] == first["Organization"][0]["id"]
    with server.db.read() as conn:
        assert len(server.search.find_ids(conn, "Observation", [("code", "14771-0")], SYSTEM)) == 1


@pytest.mark.parametrize("status,expected", [("P", "preliminary"), ("X", "cancelled"), ("D", "entered-in-error")])
def test_result_status_maps(server, status, expected):
    segments = [*FIVE_RESULTS[:3], f"OBX|1|NM|GLU^空腹血糖^L||{'' if status == 'X' else '7.8'}|mmol/L|3.9-6.1||||{status}"]
    stored = store(server, translate(oru(*segments), server))
    observation = stored["Observation"][0]
    assert observation["status"] == expected
    if status == "X":
        assert "valueQuantity" not in observation


def test_a_correction_that_resends_one_result_keeps_the_others_on_the_report(server):
    first = store(server, translate(oru(*FIVE_RESULTS), server))
    only_glucose = [*FIVE_RESULTS[:3], "OBX|1|NM|GLU^空腹血糖^L||6.0|mmol/L|3.9-6.1|N|||C"]
    second = store(server, translate(oru(*only_glucose, control="MSG0003"), server))
    report = second["DiagnosticReport"][0]
    assert report["id"] == first["DiagnosticReport"][0]["id"]
    assert sorted(r["reference"] for r in report["result"]) == sorted(
        f"Observation/{o['id']}" for o in first["Observation"])
    assert by_code(second["Observation"], "GLU")["valueQuantity"]["value"] == 6.0


def test_results_land_on_the_demo_networks_lab_and_resident(server):
    """With the synthetic county loaded, the county LIS's results name its stored lab and patient."""
    from fhir_server.demo.county import generate_county

    batches = generate_county(1)
    for batch in (next(batches), next(batches)):
        run_transaction(server, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in batch]},
            identity=SYSTEM)
    resident = server.resources.read("Patient", "pat-000001", identity=SYSTEM)
    resident_id = next(i["value"] for i in resident["identifier"] if i["system"] == RESIDENT_ID)
    pid = f"PID|1||X1^^^^MR~{resident_id}^^^^NNCHN||某^某||19700101|2"
    translation = translate(oru(pid, *FIVE_RESULTS[1:5]), server)
    stored_now = store(server, translation)
    glucose = stored_now["Observation"][0]
    assert glucose["performer"][0] == {"reference": "Organization/org-county-lab"}
    assert glucose["subject"] == {"reference": "Patient/pat-000001"}
    assert "Patient" not in stored_now  # an ORU does not rewrite the patient's demographics


def test_note_on_the_order_becomes_the_report_conclusion_and_multiple_patients_split(server):
    second_pid = "PID|2||ZY2026000999^^^XRMYY^MR||李^建国||19491231|1"
    translation = translate(oru(
        PID, "OBR|1||F1|GLU^空腹血糖^L|||20260512083000", "NTE|1||标本轻度溶血",
        "OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|H|||F",
        second_pid, "OBR|1||F2|GLU^空腹血糖^L|||20260512084000",
        "OBX|1|NM|GLU^空腹血糖^L||5.1|mmol/L|3.9-6.1|N|||F"), server)
    result = store(server, translation)
    reports = {r["identifier"][0]["value"]: r for r in result["DiagnosticReport"]}
    assert reports["F1"]["conclusion"] == "标本轻度溶血"
    patients = {p["name"][0]["text"]: p["id"] for p in result["Patient"]}
    assert reports["F1"]["subject"] == {"reference": f"Patient/{patients['王秀英']}"}
    assert reports["F2"]["subject"] == {"reference": f"Patient/{patients['李建国']}"}


def test_the_visit_of_the_pv1_is_the_encounter_of_the_report_and_its_results(server):
    """PV1 after PID names the visit: an Encounter keyed on PV1-19, which the DiagnosticReport
    and every Observation point at; a later message of the same visit (an ADT, say) finds it."""
    fields = [""] * 45
    fields[1:3] = ["1", "O"]  # PV1-2 patient class: outpatient
    fields[3] = "内分泌科门诊"
    fields[19] = "MZ20260512007"  # visit number
    fields[44] = "20260512080000"
    pv1 = "PV1|" + "|".join(fields[1:45])
    stored = store(server, translate(oru(FIVE_RESULTS[0], pv1, *FIVE_RESULTS[1:]), server))
    [encounter] = stored["Encounter"]
    assert encounter["class"]["code"] == "AMB"
    assert encounter["identifier"][0]["value"] == "MZ20260512007"
    assert encounter["subject"] == stored["DiagnosticReport"][0]["subject"]
    visit = {"reference": f"Encounter/{encounter['id']}"}
    assert stored["DiagnosticReport"][0]["encounter"] == visit
    assert [o["encounter"] for o in stored["Observation"]] == [visit] * 5
    again = store(server, translate(oru(FIVE_RESULTS[0], pv1, *FIVE_RESULTS[1:], control="MSG0002"), server))
    assert again["Encounter"][0]["id"] == encounter["id"]  # the same visit, not a second Encounter


def test_results_without_a_pv1_name_no_encounter(server):
    stored = store(server, translate(oru(*FIVE_RESULTS), server))
    assert "Encounter" not in stored
    assert "encounter" not in stored["DiagnosticReport"][0]
