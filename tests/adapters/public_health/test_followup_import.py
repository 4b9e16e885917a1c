"""Importing realistic follow-up files: the resources written, field by field; idempotency;
a corrected file; rows that cannot be used (issue 6, items 1 and 2).

Files (tests/adapters/public_health/files):

* hypertension.csv (UTF-8, Chinese headers): code digits and words, blank cells, a bad date
  (line 5), an invalid resident ID (line 7), the same visit twice then corrected (lines 2,
  6, 8), an urgent blood pressure (line 3), a referral to the county hospital (line 9);
* diabetes-gb18030.csv (GB18030): a patient with no Condition or CarePlan, insulin, foot
  pulse, HbA1c with its own date, glucose 16.7 (urgent), a duplicate row, 2025-02-30;
* hypertension-corrected.xlsx: line 2 corrects the 2025-03-10 visit (fewer fields);
* diabetes.json (English keys): glucose 3.8 (urgent) and 3.9 (not urgent).
"""

from __future__ import annotations

from dataclasses import replace

from adapters.public_health.follow_up_bundle import ITEM_SYSTEM, RECORD_SYSTEM, resource_id
from adapters.public_health.follow_up_import import import_file
from fhir_server.auth.identity import SYSTEM
from fhir_server.demo import codes
from tests.adapters.public_health.conftest import FILES

LOCAL = codes.LOCAL_BASE


def _import(server, name: str, kind: str):
    return import_file(server, (FILES / name).read_bytes(), kind=kind, name=name)


def _read(server, rtype: str, rid: str) -> dict:
    return server.resources.read(rtype, rid, identity=SYSTEM)


def _search(server, rtype: str, pairs: list[tuple[str, str]]) -> list[dict]:
    request = server.search.parse(rtype, [*pairs, ("_count", "1000")])
    return [s.json() for s in server.search.search(request, identity=SYSTEM).matches]


def _ext(resource: dict, name: str) -> dict:
    return next(e for e in resource.get("extension", []) if e["url"] == f"{LOCAL}/StructureDefinition/{name}")


def _id(value: str) -> str:
    return resource_id(value)


def _versions(server) -> dict[tuple[str, str], str]:
    out = {}
    for rtype in ("Encounter", "Observation", "MedicationStatement", "CarePlan", "Goal", "Condition",
                  "ServiceRequest", "Task"):
        for resource in _search(server, rtype, []):
            out[(rtype, resource["id"])] = resource["meta"]["versionId"]
    return out


HTN_1 = "hypertension-43053010110100001-20250310"  # 王建国, 2025-03-10
HTN_2 = "hypertension-43053010110100001-20250612"  # 王建国, 2025-06-12, SBP 182
HTN_3 = "hypertension-43053010110200003-20250615"  # 张德明, home visit
HTN_4 = "hypertension-43053010110200003-20250901"  # 张德明, referral
DM_1 = "diabetes-43053010210300002-20250408"  # 李秀英
DM_2 = "diabetes-43053010210300002-20250520"  # 李秀英, glucose 16.7


def test_hypertension_csv_report_row_by_row(county):
    report = _import(county, "hypertension.csv", "hypertension")
    assert report.format == "csv" and report.encoding == "utf-8" and report.unknown_headers == []
    by_line = {r.line: r for r in report.rows}
    assert [(r.line, r.status) for r in report.rows] == [
        (2, "superseded"), (3, "created"), (4, "created"), (5, "error"), (6, "superseded"),
        (7, "error"), (8, "created"), (9, "created")]
    assert by_line[2].reason == "line 8 records this visit again and is the one written"
    assert by_line[5].reason == "随访日期: '2025-13-01' is not a date of the calendar"
    assert by_line[7].reason == ("身份证号 430530*******4025 is not a valid 18-character resident ID "
                                 "(GB 11643 check digit)")
    assert by_line[8].encounter == f"Encounter/{_id(HTN_1)}"
    assert by_line[3].urgent_task == f"Task/{_id(HTN_2 + '-urgent-referral-task')}"
    assert report.counts == {"created": 4, "updated": 0, "unchanged": 0, "superseded": 2, "skipped": 0, "error": 2}


def test_hypertension_encounter_field_by_field(county):
    _import(county, "hypertension.csv", "hypertension")
    enc = _read(county, "Encounter", _id(HTN_1))
    assert enc["meta"]["profile"] == [f"{LOCAL}/StructureDefinition/county-follow-up-encounter"]
    assert enc["identifier"] == [{"system": RECORD_SYSTEM, "value": HTN_1}]
    assert enc["status"] == "finished"
    assert enc["class"]["code"] == "AMB"
    assert enc["type"][0]["coding"][0]["code"] == "hypertension-follow-up"
    assert enc["subject"] == {"reference": "Patient/pat-ph-1"}
    assert enc["period"] == {"start": "2025-03-10", "end": "2025-03-10"}
    assert enc["participant"] == [{"individual": {"reference": "PractitionerRole/role-vc-01-01", "display": "赵医生"}}]
    assert enc["serviceProvider"] == {"reference": "Organization/org-vc-01-01"}
    assert enc["reasonReference"] == [{"reference": "Condition/cond-pat-ph-1-hypertension"}]
    assert _ext(enc, "visit-mode")["valueCoding"] == {
        "system": f"{LOCAL}/CodeSystem/follow-up-visit-mode", "code": "1", "display": "门诊"}
    assert _ext(enc, "visit-classification")["valueCoding"]["code"] == "2"
    assert _ext(enc, "visit-classification")["valueCoding"]["display"] == "控制不满意"
    assert _ext(enc, "next-visit-date")["valueDate"] == "2025-03-24"
    assert _ext(enc, "medication-compliance")["valueCoding"]["code"] == "1"
    lifestyle = {p["url"]: p for p in _ext(enc, "lifestyle")["extension"]}
    assert lifestyle["smoking"]["valueInteger"] == 10
    assert lifestyle["drinking"]["valueInteger"] == 100  # 2 两 = 100 ml
    assert lifestyle["exerciseSessions"]["valueInteger"] == 3
    assert lifestyle["exerciseMinutes"]["valueInteger"] == 30
    assert lifestyle["saltIntake"]["valueCoding"]["code"] == "2"
    assert lifestyle["psychologicalAdjustment"]["valueCoding"]["code"] == "1"
    assert lifestyle["adviceCompliance"]["valueCoding"]["code"] == "1"

    home = _read(county, "Encounter", _id(HTN_3))  # "2 家庭", no doctor name, blank cells
    assert home["class"]["code"] == "HH"
    assert _ext(home, "visit-mode")["valueCoding"]["code"] == "2"
    assert home["participant"] == [{"individual": {"reference": "PractitionerRole/role-vc-01-02"}}]
    assert home["period"] == {"start": "2025-06-15", "end": "2025-06-15"}
    assert "lifestyle" not in str(home.get("extension"))
    assert _ext(home, "visit-classification")["valueCoding"]["code"] == "1"


def test_hypertension_observations_field_by_field(county):
    _import(county, "hypertension.csv", "hypertension")
    enc_ref = f"Encounter/{_id(HTN_1)}"
    observations = {o["identifier"][0]["value"].removeprefix(HTN_1 + "-"): o
                    for o in _search(county, "Observation", [("encounter", enc_ref)])}
    assert sorted(observations) == ["adverse-drug-reaction", "auxiliary-exams", "bmi", "bp", "heart-rate",
                                    "symptoms", "weight"]
    bp = observations["bp"]
    assert bp["meta"]["profile"] == [f"{LOCAL}/StructureDefinition/county-blood-pressure"]
    assert bp["code"]["coding"][0]["code"] == "85354-9"
    assert bp["subject"] == {"reference": "Patient/pat-ph-1"} and bp["encounter"] == {"reference": enc_ref}
    assert bp["effectiveDateTime"] == "2025-03-10"
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"], c["valueQuantity"]["code"])
            for c in bp["component"]] == [("8480-6", 150, "mm[Hg]"), ("8462-4", 95, "mm[Hg]")]
    # the corrected row (line 8) wins: weight 71, BMI 25.4
    assert observations["weight"]["valueQuantity"] == {"value": 71.0, "unit": "kg", "system": codes.UCUM,
                                                       "code": "kg"}
    assert observations["bmi"]["valueQuantity"]["value"] == 25.4
    assert observations["bmi"]["valueQuantity"]["code"] == "kg/m2"
    assert observations["heart-rate"]["valueQuantity"]["value"] == 78
    assert observations["heart-rate"]["valueQuantity"]["code"] == "/min"
    symptoms = observations["symptoms"]
    assert symptoms["code"]["coding"][0] == {"system": ITEM_SYSTEM, "code": "symptoms",
                                             "display": "Symptoms at follow-up"}
    assert [c["code"]["coding"][0]["code"] for c in symptoms["component"]] == ["1"]
    assert observations["auxiliary-exams"]["valueString"] == "心电图正常"
    assert observations["adverse-drug-reaction"]["valueCodeableConcept"]["coding"][0]["code"] == "1"

    words = {o["identifier"][0]["value"].removeprefix(HTN_2 + "-"): o
             for o in _search(county, "Observation", [("encounter", f"Encounter/{_id(HTN_2)}")])}
    assert [c["code"]["coding"][0]["code"] for c in words["symptoms"]["component"]] == ["2", "4"]  # 头痛头晕、眼花耳鸣
    assert words["weight"]["valueQuantity"]["value"] == 69.5


def test_medications_goal_and_care_plan(county):
    _import(county, "hypertension.csv", "hypertension")
    statements = _search(county, "MedicationStatement", [("context", f"Encounter/{_id(HTN_1)}")])
    assert [(s["medicationCodeableConcept"]["text"], s["dosage"][0]["text"], s["status"]) for s in statements] == [
        ("氨氯地平片", "每日1次，每次5mg", "active")]  # line 8 has one medication; line 2 (two) was superseded
    assert statements[0]["subject"] == {"reference": "Patient/pat-ph-1"}
    assert statements[0]["effectiveDateTime"] == "2025-03-10"

    goal = _read(county, "Goal", _id(HTN_1 + "-goal"))
    assert goal["statusDate"] == "2025-03-10" and goal["subject"] == {"reference": "Patient/pat-ph-1"}
    targets = {t["measure"]["coding"][0]["code"]: t for t in goal["target"]}
    assert targets["29463-7"]["detailQuantity"]["value"] == 68.0
    assert targets["39156-5"]["detailQuantity"]["value"] == 24.0
    assert targets["smoking"]["detailQuantity"]["value"] == 5
    assert targets["drinking"]["detailQuantity"] == {"value": 50, "unit": "ml/天", "system": codes.UCUM,
                                                     "code": "mL/d"}
    assert targets["exercise-sessions"]["detailQuantity"]["value"] == 5
    assert targets["exercise-minutes"]["detailQuantity"]["value"] == 30
    assert targets["salt-intake"]["detailCodeableConcept"]["coding"][0]["code"] == "1"

    # the plan follows the latest visit (2025-06-12), whatever the order of the rows
    plan = _read(county, "CarePlan", "cp-pat-ph-1")
    assert plan["meta"]["profile"] == [f"{LOCAL}/StructureDefinition/county-care-plan"]
    nxt = plan["activity"][1]["detail"]
    assert nxt["code"]["coding"][0]["code"] == "next-visit"
    assert nxt["scheduledPeriod"] == {"start": "2025-06-26"}
    assert nxt["status"] == "scheduled"
    assert nxt["reasonReference"] == [{"reference": f"Encounter/{_id(HTN_2)}"}]
    assert plan["goal"] == [{"reference": f"Goal/{_id(HTN_2 + '-goal')}"}]  # 2025-06-12's targets (salt 轻)
    assert plan["activity"][0]["detail"]["scheduledTiming"]["repeat"]["frequency"] == 1  # kept as it was


def test_urgent_finding_and_referral(county):
    _import(county, "hypertension.csv", "hypertension")
    task = _read(county, "Task", _id(HTN_2 + "-urgent-referral-task"))
    assert task["meta"]["profile"] == [f"{LOCAL}/StructureDefinition/county-referral-task"]
    assert task["owner"] == {"reference": "Organization/org-th-01", "display": "城关镇卫生院"}
    assert task["priority"] == "urgent" and task["status"] == "requested"
    assert task["restriction"] == {"period": {"end": "2025-06-26"}}  # 2 weeks after 2025-06-12
    assert task["for"] == {"reference": "Patient/pat-ph-1"}
    request = _read(county, "ServiceRequest", _id(HTN_2 + "-urgent-referral"))
    assert task["focus"] == {"reference": f"ServiceRequest/{request['id']}"}
    assert request["reasonCode"][0]["coding"][0]["code"] == "urgent-blood-pressure"
    assert request["reasonCode"][0]["text"] == "收缩压182mmHg≥180mmHg"
    assert request["reasonReference"] == [{"reference": f"Observation/{_id(HTN_2 + '-bp')}"}]

    # the record's own referral (line 9): to the county hospital, found by name
    referral = _read(county, "ServiceRequest", _id(HTN_4 + "-referral"))
    assert referral["performer"] == [{"reference": "Organization/org-county-hospital",
                                      "display": "青山县人民医院心内科"}]
    assert referral["reasonCode"] == [{"text": "血压控制不满意"}]
    assert referral["requester"] == {"reference": "PractitionerRole/role-vc-01-02"}
    ref_task = _read(county, "Task", _id(HTN_4 + "-referral-task"))
    assert ref_task["owner"]["reference"] == "Organization/org-county-hospital"
    assert "priority" not in ref_task
    # 165/100 is not urgent and the visit has its referral: no urgent-referral Task
    assert _search(county, "Task", [("_id", _id(HTN_4 + "-urgent-referral-task"))]) == []


def test_reimport_changes_nothing(county):
    _import(county, "hypertension.csv", "hypertension")
    _import(county, "diabetes-gb18030.csv", "diabetes")
    before = _versions(county)
    again = _import(county, "hypertension.csv", "hypertension")
    again_dm = _import(county, "diabetes-gb18030.csv", "diabetes")
    assert {r.status for r in again.rows} == {"unchanged", "superseded", "error"}
    assert again.counts["unchanged"] == 4 and again_dm.counts["unchanged"] == 4
    assert _versions(county) == before  # no new version of anything


def test_corrected_xlsx_updates_the_earlier_resources(county):
    _import(county, "hypertension.csv", "hypertension")
    report = _import(county, "hypertension-corrected.xlsx", "hypertension")
    assert report.format == "xlsx"
    assert [(r.line, r.status) for r in report.rows] == [(2, "updated"), (3, "created")]
    enc = _read(county, "Encounter", _id(HTN_1))
    assert enc["meta"]["versionId"] == "2"
    assert _ext(enc, "visit-classification")["valueCoding"]["code"] == "1"  # 控制满意
    lifestyle = {p["url"] for p in _ext(enc, "lifestyle")["extension"]}
    assert lifestyle == {"smoking", "drinking", "saltIntake", "psychologicalAdjustment", "adviceCompliance"}
    observations = {o["identifier"][0]["value"].removeprefix(HTN_1 + "-"): o
                    for o in _search(county, "Observation", [("encounter", f"Encounter/{_id(HTN_1)}")])}
    assert observations["weight"]["valueQuantity"]["value"] == 72
    assert observations["bmi"]["valueQuantity"]["value"] == 25.8
    assert "auxiliary-exams" not in observations  # no longer in the record: deleted
    bp = observations["bp"]  # "150/95" in one 血压 cell: same values, same version
    assert bp["meta"]["versionId"] == "1"
    statements = _search(county, "MedicationStatement", [("context", f"Encounter/{_id(HTN_1)}")])
    assert [s["dosage"][0]["text"] for s in statements] == ["每日1次，每次10mg"]
    phone = _read(county, "Encounter", _id("hypertension-43053010110200003-20251201"))
    assert phone["class"]["code"] == "VR" and _ext(phone, "medication-compliance")["valueCoding"]["code"] == "2"


def test_a_visit_named_twice_in_a_reimport_ends_as_its_last_row(county):
    """A stored visit, then a file naming it by resident ID (with 辅助检查) and again by
    health-record number only (without): the second row sees what the first one wrote."""
    header = "身份证号,健康档案编号,随访日期,随访方式,收缩压,舒张压,辅助检查\n"
    first = header + "43053019580314025X,43053010110100001,2025-07-01,1,140,90,\n"
    again = header + ("43053019580314025X,,2025-07-01,1,140,90,心电图正常\n"
                      ",43053010110100001,2025-07-01,1,140,90,\n")
    assert import_file(county, first.encode(), kind="hypertension", name="a.csv").counts["created"] == 1
    report = import_file(county, again.encode(), kind="hypertension", name="b.csv")
    assert [r.status for r in report.rows] == ["updated", "updated"]
    visit = f"Encounter/{_id('hypertension-43053010110100001-20250701')}"
    observations = [o["identifier"][0]["value"].rsplit("-", 1)[-1]
                    for o in _search(county, "Observation", [("encounter", visit)])]
    assert observations == ["bp"]


def test_a_reimport_searches_the_store_per_file_not_per_row(county, monkeypatch):
    """The stored visits a re-import compares with are read for the whole file at once: more
    visits of the same patients cost no more searches."""
    def searches_of_reimport(visits: int, month: int) -> int:
        rows = [f"{resident},2026-{month:02d}-{day:02d},1,{130 + day},80,心电图正常"
                for day in range(1, visits + 1) for resident in ("43053019580314025X", "430524194907300113")]
        data = ("身份证号,随访日期,随访方式,收缩压,舒张压,辅助检查\n" + "\n".join(rows)).encode()
        assert import_file(county, data, kind="hypertension", name="f.csv").counts["created"] == 2 * visits
        calls = []
        search = county.search.search
        monkeypatch.setattr(county.search, "search", lambda *args, **kw: calls.append(1) or search(*args, **kw))
        assert import_file(county, data, kind="hypertension", name="f.csv").counts["unchanged"] == 2 * visits
        monkeypatch.undo()
        return len(calls)

    assert searches_of_reimport(6, month=3) == searches_of_reimport(2, month=1)


def test_diabetes_gb18030_field_by_field(county):
    report = _import(county, "diabetes-gb18030.csv", "diabetes")
    assert report.encoding == "gb18030"
    assert [(r.line, r.status) for r in report.rows] == [
        (2, "created"), (3, "created"), (4, "created"), (5, "unchanged"), (6, "error")]
    assert report.rows[3].reason == "same as line 3"
    assert report.rows[4].reason == "随访日期: '2025-02-30' is not a date of the calendar"
    assert report.rows[0].notes == ["no diabetes Condition was recorded for the patient: one was added",
                                    "the patient had no chronic-disease care plan: one was added"]

    enc = _read(county, "Encounter", _id(DM_1))
    assert enc["type"][0]["coding"][0]["code"] == "diabetes-follow-up"
    assert enc["participant"][0]["individual"] == {"reference": "PractitionerRole/role-vc-02-03", "display": "孙医生"}
    assert _ext(enc, "visit-classification")["valueCoding"]["code"] == "2"
    lifestyle = {p["url"]: p for p in _ext(enc, "lifestyle")["extension"]}
    assert (lifestyle["smoking"]["valueInteger"], lifestyle["drinking"]["valueInteger"]) == (0, 0)
    assert (lifestyle["exerciseSessions"]["valueInteger"], lifestyle["exerciseMinutes"]["valueInteger"]) == (5, 40)
    assert lifestyle["adviceCompliance"]["valueCoding"]["code"] == "2"  # 一般
    observations = {o["identifier"][0]["value"].removeprefix(DM_1 + "-"): o
                    for o in _search(county, "Observation", [("encounter", f"Encounter/{_id(DM_1)}")])}
    glucose = observations["glucose"]
    assert glucose["meta"]["profile"] == [f"{LOCAL}/StructureDefinition/county-fasting-glucose"]
    assert glucose["code"]["coding"][0]["code"] == "14771-0"
    assert glucose["valueQuantity"]["value"] == 7.8 and glucose["valueQuantity"]["code"] == "mmol/L"
    hba1c = observations["hba1c"]
    assert hba1c["valueQuantity"]["value"] == 7.2 and hba1c["effectiveDateTime"] == "2025-04-01"
    pulse = observations["dorsalis-pedis-pulse"]
    assert pulse["valueCodeableConcept"]["coding"][0]["code"] == "2"  # 减弱
    assert pulse["bodySite"]["coding"][0]["code"] == "both"  # 双侧
    assert observations["hypoglycaemia"]["valueCodeableConcept"]["coding"][0]["code"] == "2"  # 偶尔
    assert observations["staple-food"]["valueQuantity"]["value"] == 300
    reaction = observations["adverse-drug-reaction"]["valueCodeableConcept"]
    assert reaction["coding"][0]["code"] == "2" and reaction["text"] == "轻度胃肠不适"
    assert [c["code"]["coding"][0]["code"] for c in observations["symptoms"]["component"]] == ["2", "4"]
    statements = {s["identifier"][0]["value"].removeprefix(DM_1 + "-"): s
                  for s in _search(county, "MedicationStatement", [("context", f"Encounter/{_id(DM_1)}")])}
    assert statements["medication-1"]["medicationCodeableConcept"] == {"text": "二甲双胍片"}
    insulin = statements["insulin"]
    assert insulin["medicationCodeableConcept"]["coding"][0]["code"] == "A10A"
    assert insulin["medicationCodeableConcept"]["text"] == "甘精胰岛素"
    assert insulin["dosage"] == [{"text": "每晚睡前皮下注射10单位"}]

    condition = _read(county, "Condition", _id("diabetes-condition-pat-ph-2"))
    assert condition["code"]["coding"][0]["code"] == "E11.9"
    plan = _read(county, "CarePlan", _id("diabetes-care-plan-pat-ph-2"))
    assert plan["addresses"] == [{"reference": f"Condition/{condition['id']}"}]
    assert plan["author"] == {"reference": "PractitionerRole/role-vc-02-03"}
    assert plan["period"] == {"start": "2025-04-08"}
    assert plan["activity"][1]["detail"]["scheduledPeriod"] == {"start": "2025-06-03"}  # the latest visit's
    goal = _read(county, "Goal", _id(DM_1 + "-goal"))
    targets = {t["measure"]["coding"][0]["code"]: t["detailQuantity"]["value"] for t in goal["target"]}
    assert targets == {"29463-7": 60.0, "39156-5": 23.5, "smoking": 0, "drinking": 0, "exercise-sessions": 6,
                       "exercise-minutes": 40, "staple-food": 250}

    task = _read(county, "Task", _id(DM_2 + "-urgent-referral-task"))  # glucose 16.7
    assert task["owner"]["reference"] == "Organization/org-th-02"
    assert task["restriction"] == {"period": {"end": "2025-06-03"}}


def test_json_with_english_keys_and_low_glucose(county):
    report = _import(county, "diabetes.json", "diabetes")
    assert report.format == "json"
    assert [(r.line, r.status) for r in report.rows] == [(1, "created"), (2, "created")]
    assert report.rows[0].urgent_task is not None and report.rows[1].urgent_task is None  # 3.8 / 3.9
    task = _read(county, "Task", report.rows[0].urgent_task.split("/")[1])
    assert task["owner"]["reference"] == "Organization/org-th-01"
    assert task["description"].startswith("紧急转诊：空腹血糖3.8mmol/L<3.9mmol/L")
    statements = _search(county, "MedicationStatement", [("context", report.rows[0].encounter)])
    assert [(s["medicationCodeableConcept"]["text"], s["dosage"][0]["text"]) for s in statements] == [
        ("格列美脲片", "每日1次，每次2mg")]
    enc = _read(county, "Encounter", report.rows[1].encounter.split("/")[1])
    assert enc["identifier"][0]["value"] == "diabetes-43053010110200003-20251204"  # hrn from the patient


def test_unknown_patient_and_missing_fields_are_reported(county):
    data = ("身份证号,健康档案编号,随访日期,收缩压,舒张压\n"
            "11010519491231002X,,2025-03-01,140,90\n"
            ",,2025-03-01,140,90\n"
            ",43053010110100001,,140,90\n"
            ",43053010110100001,2025-03-02,140,\n"
            ",4305301011010000,2025-03-02,140,90\n").encode()
    report = import_file(county, data, kind="hypertension", name="x.csv")
    assert [(r.line, r.status, r.reason) for r in report.rows] == [
        (2, "error", "no patient with this resident ID is known to the server"),
        (3, "error", "neither 身份证号 (resident ID) nor 健康档案编号 (health-record number) is given"),
        (4, "error", "随访日期 (visit date) is missing"),
        (5, "error", "a blood pressure needs both 收缩压 and 舒张压"),
        (6, "error", "健康档案编号 '4305301011010000' is not 17 digits"),
    ]
    assert _search(county, "Encounter", [("type", "hypertension-follow-up")]) == []


def test_visit_recorded_by_another_system_is_skipped(county):
    other = {"resourceType": "Encounter", "id": "enc-his-1", "meta": codes.profile("county-follow-up-encounter"),
             "extension": [{"url": codes.VISIT_MODE_EXTENSION,
                            "valueCoding": {"system": codes.VISIT_MODE, "code": "1"}}],
             "status": "finished", "class": {"system": codes.ACT_CODE, "code": "AMB"},
             "type": [{"coding": [{"system": codes.ENCOUNTER_TYPE, "code": "hypertension-follow-up"}]}],
             "subject": {"reference": "Patient/pat-ph-3"},
             "participant": [{"individual": {"reference": "PractitionerRole/role-vc-01-02"}}],
             "period": {"start": "2025-06-15T09:00:00+08:00"},
             "serviceProvider": {"reference": "Organization/org-vc-01-02"}}
    county.resources.create(other, res_id="enc-his-1", identity=SYSTEM)
    report = _import(county, "hypertension.csv", "hypertension")
    assert report.rows[2].status == "skipped"
    assert report.rows[2].reason == ("this visit is already recorded by another system (Encounter/enc-his-1); "
                                     "not imported again")


def test_every_field_of_a_record_survives_fhir_and_back(county):
    """The record model round trip the CDA adapter relies on: to FHIR (one transaction) and back."""
    from datetime import date

    from adapters.public_health.follow_up_bundle import to_bundle
    from adapters.public_health.follow_up_import import import_record
    from adapters.public_health.follow_up_record import FollowUpRecord, Medication
    from adapters.public_health.from_fhir import from_fhir

    record = FollowUpRecord(
        kind="diabetes", visit_date=date(2025, 8, 8), name="李秀英", resident_id="43053019621102054X",
        health_record_number="43053010210300002", visit_mode="2", symptoms=["2", "5", "10"], symptoms_other="口干",
        sbp=146, dbp=88, weight_kg=63.2, target_weight_kg=60.0, bmi=25.3, target_bmi=24.0, heart_rate=76,
        other_signs="下肢轻度水肿", smoking_per_day=3, target_smoking_per_day=0, drinking_per_day=0.5,
        target_drinking_per_day=0.0, exercise_times_per_week=4, exercise_minutes=30, target_exercise_times_per_week=5,
        target_exercise_minutes=40, psychological_adjustment="2", compliance_with_advice="1",
        auxiliary_exams="尿微量白蛋白正常", medication_compliance="2", adverse_reactions="2",
        adverse_reactions_text="低血糖", visit_classification="3",
        medications=[Medication("二甲双胍片", "每日2次，每次0.5g"), Medication("阿卡波糖片", None)],
        referral_reason="血糖控制不佳", referral_to="青山县人民医院内分泌科", next_visit_date=date(2025, 8, 22),
        doctor="孙医生", dorsalis_pedis_pulse="3", dorsalis_pedis_side="left", staple_food_g_per_day=280.0,
        target_staple_food_g_per_day=250.0, fasting_glucose=8.4, hba1c=7.9, hba1c_date=date(2025, 8, 1),
        hypoglycaemia="3", insulin_type="门冬胰岛素30", insulin_usage="早晚餐前各皮下注射12单位")
    bundle = to_bundle(county, record)
    assert bundle["type"] == "transaction" and all(e["request"]["method"] == "PUT" for e in bundle["entry"])
    result = import_record(county, record)
    assert result.status == "created"
    back = from_fhir(county, result.encounter)
    assert back.source == result.encounter
    assert replace(back, source=None) == record


def test_writing_in_two_processes_gives_the_same_result(county):
    one = _import(county, "hypertension.csv", "hypertension")
    dm = _import(county, "diabetes-gb18030.csv", "diabetes")
    written = _versions(county)
    # the same files again in worker processes: the same report, nothing new
    data = (FILES / "hypertension.csv").read_bytes()
    again = import_file(county, data, kind="hypertension", name="hypertension.csv", workers=2, group_size=1)
    assert [(r.line, r.status) for r in again.rows] == [
        (r.line, "unchanged" if r.status == "created" else r.status) for r in one.rows]
    data = (FILES / "diabetes-gb18030.csv").read_bytes()
    again = import_file(county, data, kind="diabetes", name="diabetes.csv", workers=2, group_size=1)
    assert [r.status for r in again.rows] == ["unchanged" if r.status == "created" else r.status for r in dm.rows]
    assert _versions(county) == written


def test_two_processes_write_a_file(county):
    report = import_file(county, (FILES / "hypertension.csv").read_bytes(), kind="hypertension",
                         name="hypertension.csv", workers=2, group_size=1)
    assert [(r.line, r.status) for r in report.rows] == [
        (2, "superseded"), (3, "created"), (4, "created"), (5, "error"), (6, "superseded"),
        (7, "error"), (8, "created"), (9, "created")]
    assert report.rows[1].urgent_task == f"Task/{_id(HTN_2 + '-urgent-referral-task')}"
    assert _read(county, "Observation", _id(HTN_1 + "-weight"))["valueQuantity"]["value"] == 71.0
