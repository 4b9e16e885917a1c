"""A small county for the follow-up tests: the demo network and three known patients.

=========  ======  ==================  =================  ===========  ======================
patient    name    resident ID         health record      clinic       recorded care
=========  ======  ==================  =================  ===========  ======================
pat-ph-1   王建国  43053019580314025X  43053010110100001  org-vc-01-01 hypertension, CarePlan
pat-ph-2   李秀英  43053019621102054X  43053010210300002  org-vc-02-03 nothing (diabetes)
pat-ph-3   张德明  430524194907300113  43053010110200003  org-vc-01-02 both, one CarePlan
=========  ======  ==================  =================  ===========  ======================
"""

from __future__ import annotations

from fhir_server.demo import codes
from fhir_server.demo.county import generate_county
from fhir_server.demo.datatypes import concept
from fhir_server.demo.loader import write_batch

PATIENTS = {
    "pat-ph-1": ("王建国", "male", "1958-03-14", "43053019580314025X", "43053010110100001", "01-01"),
    "pat-ph-2": ("李秀英", "female", "1962-11-02", "43053019621102054X", "43053010210300002", "02-03"),
    "pat-ph-3": ("张德明", "male", "1949-07-30", "430524194907300113", "43053010110200003", "01-02"),
}
RESIDENT_IDS = {pid: p[3] for pid, p in PATIENTS.items()}


# pat-ph-1's home address and mobile phone (the CDA header carries them)
HOME = {"use": "home", "text": "湖南省邵阳市青山县青山镇桃花村12号", "line": ["青山镇桃花村12号"],
        "city": "邵阳市", "district": "青山县", "state": "湖南省", "country": "CN"}
MOBILE = {"system": "phone", "value": "13807390001", "use": "mobile"}


def patient(pid: str) -> dict:
    name, sex, birth, rid, hrn, clinic = PATIENTS[pid]
    contact = {"address": [HOME], "telecom": [MOBILE]} if pid == "pat-ph-1" else {}
    return {
        "resourceType": "Patient", "id": pid, "meta": codes.profile("county-patient"),
        "identifier": [
            {"use": "official", "type": concept(codes.IDENTIFIER_TYPE, "NI", None, "居民身份证"),
             "system": codes.OID_RESIDENT_ID, "value": rid},
            {"use": "usual", "type": {"text": "健康档案编号"}, "system": codes.OID_HEALTH_RECORD, "value": hrn},
        ],
        "active": True,
        "name": [{"use": "official", "text": name, "family": name[0], "given": [name[1:]]}],
        "gender": sex, "birthDate": birth, **contact,
        "generalPractitioner": [{"reference": f"PractitionerRole/role-vc-{clinic}"}],
        "managingOrganization": {"reference": f"Organization/org-vc-{clinic}"},
    }


def condition(pid: str, kind: str) -> dict:
    icd, display, text = codes.CONDITIONS[kind]
    return {
        "resourceType": "Condition", "id": f"cond-{pid}-{kind}", "meta": codes.profile("county-condition"),
        "clinicalStatus": concept(codes.CONDITION_CLINICAL, "active"),
        "verificationStatus": concept(codes.CONDITION_VERIFICATION, "confirmed"),
        "code": concept(codes.ICD10, icd, display, text),
        "subject": {"reference": f"Patient/{pid}"},
    }


def care_plan(pid: str, conditions: list[str], role: str) -> dict:
    return {
        "resourceType": "CarePlan", "id": f"cp-{pid}", "meta": codes.profile("county-care-plan"),
        "status": "active", "intent": "plan",
        "category": [concept(codes.CARE_PLAN_CATEGORY, "chronic-disease-management", "慢性病患者健康管理")],
        "title": "患者健康管理",
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": "2020-01-01"},
        "author": {"reference": f"PractitionerRole/{role}"},
        "addresses": [{"reference": f"Condition/{c}"} for c in conditions],
        "activity": [{"detail": {
            "kind": "Appointment", "code": {"text": "面对面随访"}, "status": "in-progress",
            "scheduledTiming": {"repeat": {"frequency": 1, "period": 3, "periodUnit": "mo"}}}}],
    }


def load_county(server) -> None:
    """The demo network (organisations, locations, doctors) and the three patients."""
    network = next(iter(generate_county(0)))
    write_batch(server, network)
    write_batch(server, [
        patient("pat-ph-1"), patient("pat-ph-2"), patient("pat-ph-3"),
        condition("pat-ph-1", "hypertension"),
        condition("pat-ph-3", "hypertension"), condition("pat-ph-3", "diabetes"),
        care_plan("pat-ph-1", ["cond-pat-ph-1-hypertension"], "role-vc-01-01"),
        care_plan("pat-ph-3", ["cond-pat-ph-3-hypertension", "cond-pat-ph-3-diabetes"], "role-vc-01-02"),
    ])
