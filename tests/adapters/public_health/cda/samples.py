"""Sample visits and documents shared by the CDA tests (no tests here).

=====================  ==================================================================
sample                 what
=====================  ==================================================================
hypertension_visit     王建国 (pat-ph-1), 2026-03-10 clinic visit, every hypertension field
diabetes_visit         张德明 (pat-ph-3), 2026-04-15 home visit, every diabetes field and a
                       referral to 县人民医院内分泌科
downward_referral      files/referral-downward.xml with the county hospital and township
                       centre codes of the demo network filled in
BILLION_LAUGHS         the classic entity-expansion attack, as a CDA document
=====================  ==================================================================
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from adapters.public_health.follow_up_record import FollowUpRecord, Medication
from fhir_server.auth.identity import SYSTEM
from fhir_server.demo import codes

FILES = Path(__file__).parent / "files"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol4;</title></ClinicalDocument>"""


def hypertension_visit() -> FollowUpRecord:
    return FollowUpRecord(
        kind="hypertension", visit_date=date(2026, 3, 10), name="王建国", resident_id="43053019580314025X",
        health_record_number="43053010110100001", visit_mode="1", symptoms=["2", "4"], symptoms_other="偶有乏力",
        sbp=150, dbp=95, weight_kg=70.5, target_weight_kg=68.0, bmi=25.1, target_bmi=24.0, heart_rate=78,
        other_signs="双下肢无水肿", smoking_per_day=10, target_smoking_per_day=5, drinking_per_day=2.0,
        target_drinking_per_day=1.0, exercise_times_per_week=3, exercise_minutes=30,
        target_exercise_times_per_week=5, target_exercise_minutes=30, salt_intake="2", target_salt_intake="1",
        psychological_adjustment="1", compliance_with_advice="2", auxiliary_exams="心电图：窦性心律",
        medication_compliance="2", adverse_reactions="2", adverse_reactions_text="干咳",
        visit_classification="2",
        medications=[Medication("氨氯地平片", "每日1次，每次5mg"), Medication("氢氯噻嗪片", "每日1次，每次12.5mg")],
        next_visit_date=date(2026, 3, 24), doctor="刘春生",
    )


def diabetes_visit() -> FollowUpRecord:
    return FollowUpRecord(
        kind="diabetes", visit_date=date(2026, 4, 15), name="张德明", resident_id="430524194907300113",
        health_record_number="43053010110200003", visit_mode="2", symptoms=["2", "4", "7"], sbp=136, dbp=82,
        weight_kg=64.0, target_weight_kg=62.0, bmi=23.5, target_bmi=23.0, other_signs="足部皮肤完整",
        dorsalis_pedis_pulse="2", dorsalis_pedis_side="left", smoking_per_day=0, target_smoking_per_day=0,
        drinking_per_day=0.5, target_drinking_per_day=0.0, exercise_times_per_week=7, exercise_minutes=40,
        target_exercise_times_per_week=7, target_exercise_minutes=45, staple_food_g_per_day=300.0,
        target_staple_food_g_per_day=250.0, psychological_adjustment="2", compliance_with_advice="1",
        fasting_glucose=8.2, hba1c=7.4, hba1c_date=date(2026, 4, 10), auxiliary_exams="尿微量白蛋白阴性",
        medication_compliance="1", adverse_reactions="1", hypoglycaemia="2", visit_classification="2",
        medications=[Medication("二甲双胍片", "每日2次，每次0.5g")], insulin_type="门冬胰岛素30注射液",
        insulin_usage="早晚餐前各12单位皮下注射", referral_reason="空腹血糖连续两次控制不满意",
        referral_to="县人民医院内分泌科", next_visit_date=date(2026, 4, 29), doctor="陈玉梅",
    )


def downward_referral(server) -> bytes:
    def code(org_id: str) -> str:
        org = server.resources.read("Organization", org_id, identity=SYSTEM)
        return next(i["value"] for i in org["identifier"] if i["system"] == codes.OID_INSTITUTION)

    text = (FILES / "referral-downward.xml").read_text(encoding="utf-8")
    return text.replace("{HOSPITAL}", code("org-county-hospital")).replace("{TOWNSHIP}", code("org-th-01")).encode()
