"""A follow-up record -> one FHIR transaction Bundle, conforming to the county profiles.

What a record becomes (ids are name-based UUIDs of the record identifier, so the same record
always writes the same resources, and writing it again changes nothing):

==============================  ==============================================================
form field(s)                   FHIR
==============================  ==============================================================
随访日期, 随访方式, 随访医生    Encounter (county-follow-up-encounter): period.start, class
                                (AMB clinic / HH home / VR phone), visit-mode extension,
                                participant (the doctor's PractitionerRole, display = 随访医生)
此次随访分类, 服药依从性,        Encounter extensions visit-classification, medication-compliance,
下次随访日期                    next-visit-date
生活方式 (吸烟, 饮酒, 运动,      Encounter extension lifestyle (smoking a day, drinking in ml a
摄盐, 心理调整, 遵医行为)       day = 两 x 50, exercise sessions/minutes, salt, psychology, advice)
收缩压 / 舒张压                 Observation county-blood-pressure (panel with 2 components)
体重, 体质指数, 心率            Observation county-body-weight, county-bmi, county-heart-rate
空腹血糖, 糖化血红蛋白          Observation county-fasting-glucose (mmol/L), county-hba1c (%)
症状, 足背动脉搏动, 低血糖反应,  Observation coded with ``ITEM_SYSTEM`` (follow-up items):
药物不良反应, 主食, 其他体征,    symptoms (one component per symptom), dorsalis-pedis-pulse
辅助检查                        (bodySite = side), hypoglycaemia, adverse-drug-reaction,
                                staple-food (g/d), other-signs, auxiliary-exams
药物名称 / 用法用量, 胰岛素     MedicationStatement per line (insulin coded ATC A10A)
目标 (体重, BMI, 吸烟...)        Goal of the visit (statusDate = the visit); the CarePlan's goal
                                is the latest visit's Goal
下次随访日期                    CarePlan activity "下次随访" (scheduledPeriod.start)
转诊原因, 转诊机构及科别        ServiceRequest county-referral-request + Task county-referral-task
urgent finding                  ServiceRequest + Task owned by the township centre, due in 2
                                weeks (``urgent_referral``), unless a referral exists
==============================  ==============================================================

The CarePlan is updated only by the patient's latest follow-up (a record older than the visit
that last set it leaves it alone). A patient with no chronic-disease CarePlan
gets one (and a Condition for the disease when none is recorded). Referrals are written
once: a re-import does not overwrite a referral the receiving side has since accepted.
A corrected record deletes the Observations and MedicationStatements it no longer has.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from sqlalchemy import Connection

from adapters.public_health.follow_up_record import DIABETES, HYPERTENSION, FollowUpRecord, RecordError
from adapters.public_health.form_codes import code_tables, system_of
from adapters.public_health.patient_context import (
    ImportCache,
    OrganizationCache,
    PatientContext,
    gather,
    search_resources,
)
from adapters.public_health.urgent_referral import DEFAULT_THRESHOLDS, Finding, Thresholds, due_date, urgent_findings
from fhir_server.auth.identity import SYSTEM, Identity
from fhir_server.demo import codes
from fhir_server.demo.datatypes import concept
from fhir_server.errors import FhirError
from fhir_server.settings import PROJECT_ROOT

__all__ = ["to_bundle", "build", "urgent_referral", "FollowUpBundle", "record_identifier", "resource_id",
           "RECORD_SYSTEM", "ITEM_SYSTEM", "NEXT_VISIT_CODE", "ATC", "INSULIN_ATC"]

RECORD_SYSTEM = f"{codes.LOCAL_BASE}/sid/public-health-follow-up"
ITEM_SYSTEM = f"{codes.LOCAL_BASE}/CodeSystem/public-health-follow-up-item"
NEXT_VISIT_CODE = "next-visit"
ATC = "http://www.whocc.no/atc"
INSULIN_ATC = ("A10A", "Insulins and analogues")
REFERRAL_DIRECTION_EXTENSION = f"{codes.LOCAL_BASE}/StructureDefinition/referral-direction"
MEDICATION_COMPLIANCE_EXTENSION = f"{codes.LOCAL_BASE}/StructureDefinition/medication-compliance"
LIFESTYLE_EXTENSION = f"{codes.LOCAL_BASE}/StructureDefinition/lifestyle"
MANAGING_ORGANIZATION_EXTENSION = f"{codes.LOCAL_BASE}/StructureDefinition/managing-organization"
SNOMED = "http://snomed.info/sct"
ML_PER_LIANG = 50  # 1 两 of liquor = 50 ml
ENCOUNTER_CLASS = {"1": ("AMB", "ambulatory"), "2": ("HH", "home health"), "3": ("VR", "virtual")}
# follow-up item codes (ITEM_SYSTEM, shipped as a CodeSystem): code -> (English, Chinese)
ITEM_CODE_SYSTEM_FILE = PROJECT_ROOT / "terminology" / "codesystems" / "public-health-follow-up-item.json"
ITEMS = {
    entry["code"]: (entry["display"], entry["designation"][0]["value"])
    for entry in orjson.loads(ITEM_CODE_SYSTEM_FILE.read_bytes())["concept"]
}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SYMPTOM_TABLE = {HYPERTENSION: "hypertension_symptom", DIABETES: "diabetes_symptom"}
DISEASE_TEXT = {HYPERTENSION: "高血压", DIABETES: "2型糖尿病"}


@dataclass
class FollowUpBundle:
    bundle: dict
    encounter_id: str
    context: PatientContext
    findings: list[Finding] = field(default_factory=list)
    urgent_task_id: str | None = None  # when this Bundle creates the urgent-referral Task
    notes: list[str] = field(default_factory=list)  # what a person should know (report)


def record_identifier(record: FollowUpRecord, context: PatientContext) -> str:
    """``<kind>-<health-record number, else resident ID>-<yyyymmdd>``: one per visit and form."""
    person = context.identifier(codes.OID_HEALTH_RECORD) or record.health_record_number or \
        context.identifier(codes.OID_RESIDENT_ID) or context.patient["id"]
    return f"{record.kind}-{person}-{record.visit_date:%Y%m%d}"


def resource_id(value: str) -> str:
    """The resource id of an identifier value of ``RECORD_SYSTEM`` (a name-based UUID)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{RECORD_SYSTEM}|{value}"))


def to_bundle(server, record: FollowUpRecord, identity: Identity = SYSTEM) -> dict:
    """The transaction Bundle of ``record`` (looks the patient up; ``RecordError`` if unusable)."""
    with server.db.read() as conn:
        return build(server, conn, record, identity).bundle


def build(server, conn: Connection, record: FollowUpRecord, identity: Identity = SYSTEM,
          organizations: OrganizationCache | None = None,
          thresholds: Thresholds = DEFAULT_THRESHOLDS, *, care_plan: bool = True) -> FollowUpBundle:
    """The Bundle of ``record``; ``care_plan=False`` leaves the CarePlan to a later visit of the
    same patient that is being imported too (the visit's Goal is written all the same)."""
    if record.visit_date is None:
        raise RecordError("随访日期 (visit date) is missing")
    if (record.sbp is None) != (record.dbp is None):
        raise RecordError("a blood pressure needs both 收缩压 and 舒张压")
    organizations = organizations or OrganizationCache()
    context = gather(server, conn, record, identity, organizations)
    return _Builder(server, conn, record, context, identity, organizations, thresholds, care_plan).run()


def urgent_referral(server, conn: Connection, record: FollowUpRecord, encounter_ref: str,
                    observation_refs: dict[str, str], identity: Identity = SYSTEM,
                    thresholds: Thresholds = DEFAULT_THRESHOLDS) -> FollowUpBundle:
    """The urgent-referral ServiceRequest and Task of a visit another system recorded
    (``encounter_ref``; ``observation_refs`` names its "bp" and "glucose" Observations), as a
    transaction Bundle: empty when the record is not urgent or a referral exists. The ids are
    those the import gives the same visit, so neither path writes the referral twice."""
    context = gather(server, conn, record, identity)
    builder = _Builder(server, conn, record, context, identity, OrganizationCache(), thresholds,
                       encounter_ref=encounter_ref, observation_refs=observation_refs)
    findings = urgent_findings(record, thresholds)
    task = builder._urgent_referral(findings)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": builder.entries}
    return FollowUpBundle(bundle, encounter_ref.split("/")[-1], context, findings, task, builder.notes)


class _Builder:
    def __init__(self, server, conn, record: FollowUpRecord, context: PatientContext, identity: Identity,
                 organizations: OrganizationCache, thresholds: Thresholds, care_plan: bool = True, *,
                 encounter_ref: str | None = None, observation_refs: dict[str, str] | None = None):
        self.server, self.conn, self.record, self.ctx = server, conn, record, context
        self.update_care_plan = care_plan
        self.identity, self.organizations, self.thresholds = identity, organizations, thresholds
        self.key = record_identifier(record, context)
        self.encounter_id = resource_id(self.key)
        # a visit recorded by another system keeps its own Encounter and Observations
        self.enc_ref = encounter_ref or f"Encounter/{self.encounter_id}"
        self.observation_refs = observation_refs
        self.day = record.visit_date.isoformat()
        self.entries: list[dict] = []
        self.notes: list[str] = []
        self.written: set[tuple[str, str]] = set()

    # ---- helpers ------------------------------------------------------------------------
    def _ident(self, suffix: str = "") -> tuple[dict, str]:
        value = self.key + (f"-{suffix}" if suffix else "")
        return {"system": RECORD_SYSTEM, "value": value}, resource_id(value)

    def _put(self, resource: dict) -> None:
        rtype, rid = resource["resourceType"], resource["id"]
        self.written.add((rtype, rid))
        full_url = f"urn:uuid:{rid}" if _UUID.match(rid) else f"{self.server.settings.base_url}/{rtype}/{rid}"
        self.entries.append({"fullUrl": full_url, "resource": resource,
                             "request": {"method": "PUT", "url": f"{rtype}/{rid}"}})

    def _performer(self) -> dict:
        ref: dict = {}
        if self.ctx.doctor_role:
            ref["reference"] = self.ctx.doctor_role
        if self.record.doctor and (self.record.doctor != self.ctx.doctor_name or not self.ctx.doctor_role):
            ref["display"] = self.record.doctor  # 随访医生, when not the named role's own doctor
        return ref or {"display": "随访医生"}

    def _observation(self, suffix: str, profile: str | None, category: str, code: dict, **values) -> dict:
        ident, rid = self._ident(suffix)
        obs = {"resourceType": "Observation", "id": rid}
        if profile:
            obs["meta"] = codes.profile(profile)
        obs.update({
            "identifier": [ident],
            "status": "final",
            "category": [concept(codes.OBSERVATION_CATEGORY, category)],
            "code": code,
            "subject": {"reference": self.ctx.patient_ref},
            "encounter": {"reference": self.enc_ref},
            "effectiveDateTime": self.day,
            "performer": [self._performer()],
        })
        obs.update(values)
        self._put(obs)
        return obs

    def _loinc(self, key: str) -> dict:
        loinc, display, text = codes.LOINC_CODES[key]
        return concept(codes.LOINC, loinc, display, text)

    def _item(self, code: str) -> dict:
        english, chinese = ITEMS[code]
        return concept(ITEM_SYSTEM, code, english, chinese)

    def _coded(self, table: str, code: str) -> dict:
        t = code_tables()[table]
        return {"system": t.system, "code": code, "display": t.word(code)}

    # ---- the Bundle ---------------------------------------------------------------------
    def run(self) -> FollowUpBundle:
        existing = self.ctx.existing_encounter
        if existing is not None and existing.get("id") != self.encounter_id:
            raise RecordError(f"this visit is already recorded by another system (Encounter/{existing['id']}); "
                              "not imported again")
        if self.ctx.condition is None:
            self._condition()
        self._encounter()
        self._observations()
        self._medications()
        findings = urgent_findings(self.record, self.thresholds)
        self._care_plan()
        self._referral(findings)
        urgent_task = self._urgent_referral(findings)
        if existing is not None:
            stored = self._visit_resources()
            self._stale_deletes(stored)
            self._drop_unchanged(stored)
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}
        return FollowUpBundle(bundle, self.encounter_id, self.ctx, findings, urgent_task, self.notes)

    def _condition(self) -> None:
        """A Condition for the record's disease, when the patient has none recorded."""
        r, ctx = self.record, self.ctx
        icd, display, text = codes.CONDITIONS[r.kind]
        ident = {"system": RECORD_SYSTEM, "value": f"{r.kind}-condition-{ctx.patient['id']}"}
        condition = {
            "resourceType": "Condition", "id": resource_id(ident["value"]),
            "meta": codes.profile(codes.PROFILES["Condition"]),
            "identifier": [ident],
            "clinicalStatus": concept(codes.CONDITION_CLINICAL, "active"),
            "verificationStatus": concept(codes.CONDITION_VERIFICATION, "confirmed"),
            "category": [concept(codes.CONDITION_CATEGORY, "problem-list-item")],
            "code": concept(codes.ICD10, icd, display, text),
            "subject": {"reference": ctx.patient_ref},
        }
        self._put(condition)
        ctx.condition = condition
        self.notes.append(f"no {r.kind} Condition was recorded for the patient: one was added")

    def _encounter(self) -> None:
        r, ctx = self.record, self.ctx
        mode = r.visit_mode or "1"
        if r.visit_mode is None:
            self.notes.append("随访方式 not given: recorded as 1 门诊 (clinic)")
        ext = [{"url": codes.VISIT_MODE_EXTENSION, "valueCoding": self._coded("visit_mode", mode)}]
        if r.visit_classification:
            ext.append({"url": codes.VISIT_CLASSIFICATION_EXTENSION,
                        "valueCoding": self._coded("visit_classification", r.visit_classification)})
        if r.next_visit_date:
            ext.append({"url": codes.NEXT_VISIT_EXTENSION, "valueDate": r.next_visit_date.isoformat()})
        if r.medication_compliance:
            ext.append({"url": MEDICATION_COMPLIANCE_EXTENSION,
                        "valueCoding": self._coded("medication_compliance", r.medication_compliance)})
        lifestyle = self._lifestyle()
        if lifestyle:
            ext.append({"url": LIFESTYLE_EXTENSION, "extension": lifestyle})
        ident, _ = self._ident()
        klass, display = ENCOUNTER_CLASS[mode]
        encounter = {
            "resourceType": "Encounter",
            "id": self.encounter_id,
            "meta": codes.profile(codes.PROFILES["follow-up"]),
            "extension": ext,
            "identifier": [ident],
            "status": "finished",
            "class": {"system": codes.ACT_CODE, "code": klass, "display": display},
            "type": [concept(codes.ENCOUNTER_TYPE, *codes.ENCOUNTER_TYPES[r.kind])],
            "subject": {"reference": ctx.patient_ref},
            "participant": [{"individual": self._performer()}],
            "period": {"start": self.day, "end": self.day},
        }
        if ctx.condition is not None:
            encounter["reasonReference"] = [{"reference": f"Condition/{ctx.condition['id']}"}]
        if ctx.managing_organization is not None:
            encounter["serviceProvider"] = {"reference": f"Organization/{ctx.managing_organization['id']}"}
        else:
            raise RecordError("the patient has no managing organisation the server knows")
        self._put(encounter)

    def _lifestyle(self) -> list[dict]:
        r = self.record
        out: list[dict] = []

        def integer(url: str, value: float | None, factor: float = 1) -> None:
            if value is not None:
                out.append({"url": url, "valueInteger": int(round(value * factor))})

        integer("smoking", r.smoking_per_day)
        integer("drinking", r.drinking_per_day, ML_PER_LIANG)
        integer("exerciseSessions", r.exercise_times_per_week)
        integer("exerciseMinutes", r.exercise_minutes)
        if r.salt_intake:
            out.append({"url": "saltIntake", "valueCoding": self._coded("salt_intake", r.salt_intake)})
        if r.psychological_adjustment:
            out.append({"url": "psychologicalAdjustment",
                        "valueCoding": self._coded("good_fair_poor", r.psychological_adjustment)})
        if r.compliance_with_advice:
            out.append({"url": "adviceCompliance",
                        "valueCoding": self._coded("good_fair_poor", r.compliance_with_advice)})
        return out

    def _observations(self) -> None:
        r = self.record
        vital = "vital-signs"
        if r.sbp is not None and r.dbp is not None:
            self._observation("bp", "county-blood-pressure", vital, self._loinc("bp"), component=[
                {"code": self._loinc("sbp"), "valueQuantity": _quantity(r.sbp, "mm[Hg]", "mmHg")},
                {"code": self._loinc("dbp"), "valueQuantity": _quantity(r.dbp, "mm[Hg]", "mmHg")},
            ])
        if r.weight_kg is not None:
            self._observation("weight", "county-body-weight", vital, self._loinc("weight"),
                              valueQuantity=_quantity(r.weight_kg, "kg", "kg"))
        if r.bmi is not None:
            self._observation("bmi", "county-bmi", vital,
                              concept(codes.LOINC, "39156-5", "Body mass index (BMI) [Ratio]", "体质指数"),
                              valueQuantity=_quantity(r.bmi, "kg/m2", "kg/m2"))
        if r.heart_rate is not None:
            self._observation("heart-rate", "county-heart-rate", vital, self._loinc("heart_rate"),
                              valueQuantity=_quantity(r.heart_rate, "/min", "次/分"))
        if r.fasting_glucose is not None:
            self._observation("glucose", "county-fasting-glucose", "laboratory", self._loinc("glucose_moles"),
                              valueQuantity=_quantity(r.fasting_glucose, "mmol/L", "mmol/L"))
        if r.hba1c is not None:
            obs = self._observation("hba1c", "county-hba1c", "laboratory", self._loinc("hba1c"),
                                    valueQuantity=_quantity(r.hba1c, "%", "%"))
            if r.hba1c_date is not None:
                obs["effectiveDateTime"] = r.hba1c_date.isoformat()
        self._form_items()

    def _form_items(self) -> None:
        r = self.record
        if r.symptoms or r.symptoms_other:
            table = SYMPTOM_TABLE[r.kind]
            values: dict = {"component": [
                {"code": {"coding": [self._coded(table, c)]}, "valueBoolean": True} for c in r.symptoms]}
            if r.symptoms_other:
                values["valueString"] = r.symptoms_other
            if not values["component"]:
                del values["component"]
            self._observation("symptoms", None, "survey", self._item("symptoms"), **values)
        if r.other_signs:
            self._observation("other-signs", None, "exam", self._item("other-signs"), valueString=r.other_signs)
        if r.auxiliary_exams:
            self._observation("auxiliary-exams", None, "exam", self._item("auxiliary-exams"),
                              valueString=r.auxiliary_exams)
        if r.adverse_reactions or r.adverse_reactions_text:
            code = r.adverse_reactions or "2"
            value = {"coding": [self._coded("adverse_drug_reaction", code)]}
            if r.adverse_reactions_text:
                value["text"] = r.adverse_reactions_text
            self._observation("adverse-drug-reaction", None, "survey", self._item("adverse-drug-reaction"),
                              valueCodeableConcept=value)
        if r.dorsalis_pedis_pulse:
            extra = {}
            if r.dorsalis_pedis_side:
                extra["bodySite"] = {"coding": [self._coded("body_side", r.dorsalis_pedis_side)]}
            self._observation("dorsalis-pedis-pulse", None, "exam", self._item("dorsalis-pedis-pulse"),
                              valueCodeableConcept={"coding": [self._coded("dorsalis_pedis_pulse",
                                                                           r.dorsalis_pedis_pulse)]}, **extra)
        if r.hypoglycaemia:
            self._observation("hypoglycaemia", None, "survey", self._item("hypoglycaemia"),
                              valueCodeableConcept={"coding": [self._coded("hypoglycaemia", r.hypoglycaemia)]})
        if r.staple_food_g_per_day is not None:
            self._observation("staple-food", None, "social-history", self._item("staple-food"),
                              valueQuantity=_quantity(r.staple_food_g_per_day, "g/d", "克/天"))

    def _medications(self) -> None:
        r = self.record
        lines = [(f"medication-{n}", {"text": m.name}, m.usage) for n, m in enumerate(r.medications, 1)]
        if r.insulin_type or r.insulin_usage:
            insulin = {"coding": [{"system": ATC, "code": INSULIN_ATC[0], "display": INSULIN_ATC[1]}],
                       "text": r.insulin_type or "胰岛素"}
            lines.append(("insulin", insulin, r.insulin_usage))
        for suffix, medication, usage in lines:
            ident, rid = self._ident(suffix)
            statement = {
                "resourceType": "MedicationStatement",
                "id": rid,
                "identifier": [ident],
                "status": "active",
                "medicationCodeableConcept": medication,
                "subject": {"reference": self.ctx.patient_ref},
                "context": {"reference": self.enc_ref},
                "effectiveDateTime": self.day,
                "dateAsserted": self.day,
                "informationSource": self._performer(),
            }
            if self.record.medication_compliance == "3":
                statement["status"] = "not-taken"
            if usage:
                statement["dosage"] = [{"text": usage}]
            self._put(statement)

    # ---- CarePlan and Goal ------------------------------------------------------------------
    def _care_plan(self) -> None:
        """The visit's Goal (targets), then the CarePlan when this is the patient's latest visit.

        The CarePlan's activity "下次随访" names the Encounter of the visit that last set it
        (``reasonReference``) and that visit's Goal (``goal``); an older visit leaves it alone.
        """
        r, ctx = self.record, self.ctx
        goal_ref = None
        targets = self._targets()
        if targets:
            ident, goal_id = self._ident("goal")
            goal = {
                "resourceType": "Goal", "id": goal_id, "identifier": [ident],
                "lifecycleStatus": "active",
                "description": {"text": f"{DISEASE_TEXT[r.kind]}患者随访目标（生活方式与体征）"},
                "subject": {"reference": ctx.patient_ref},
                "statusDate": self.day,
                "expressedBy": self._performer() if ctx.doctor_role else {"display": r.doctor or "随访医生"},
                "target": targets,
            }
            if ctx.condition is not None:
                goal["addresses"] = [{"reference": f"Condition/{ctx.condition['id']}"}]
            self._put(goal)
            goal_ref = {"reference": f"Goal/{goal_id}"}
        if not self.update_care_plan and ctx.care_plan is not None:
            return
        if ctx.care_plan is None:
            plan = self._new_plan()
        else:  # a copy to change: its activity list and goal are replaced, the rest is shared, unchanged
            plan = {**ctx.care_plan, "activity": list(ctx.care_plan.get("activity", []))}
        activities = plan.setdefault("activity", [])
        index = next((i for i, a in enumerate(activities) if any(
            c.get("system") == ITEM_SYSTEM and c.get("code") == NEXT_VISIT_CODE
            for c in ((a.get("detail") or {}).get("code") or {}).get("coding", []))), None)
        old = activities[index]["detail"] if index is not None else {}
        last_visit = next((ref.get("reference") for ref in old.get("reasonReference", [])), None)
        if last_visit and last_visit != self.enc_ref:
            found = self._stored("Encounter", last_visit.split("/", 1)[1])
            if found is not None and (found.get("period") or {}).get("start", "")[:10] > self.day:
                self.notes.append("a later follow-up has set the care plan; targets and next visit left as they are")
                return
        goals = [g for g in plan.get("goal", []) if g not in old.get("goal", [])]
        if goal_ref is not None:
            goals.append(goal_ref)
        if goals:
            plan["goal"] = goals
        else:
            plan.pop("goal", None)
        detail = {
            "kind": "Appointment",
            "code": self._item(NEXT_VISIT_CODE),
            "reasonReference": [{"reference": self.enc_ref}],
            "status": "scheduled" if r.next_visit_date else "not-started",
            "description": f"{DISEASE_TEXT[r.kind]}患者下次随访",
        }
        if goal_ref is not None:
            detail["goal"] = [goal_ref]
        if r.next_visit_date is not None:
            detail["scheduledPeriod"] = {"start": r.next_visit_date.isoformat()}
        if index is None:
            activities.append({"detail": detail})
        else:
            activities[index] = {"detail": detail}
        self._put(plan)

    def _stored(self, rtype: str, rid: str, known: Sequence[dict] = ()) -> dict | None:
        """The current ``rtype/rid``: one of ``known``, else what the import holds, else read."""
        held = self.organizations.held(self.ctx.patient_ref, rtype) \
            if isinstance(self.organizations, ImportCache) else None
        for resource in (*known, *(held or ())):
            if resource.get("resourceType") == rtype and resource.get("id") == rid:
                return resource
        try:
            return self.server.resources.read(rtype, rid, self.conn, identity=self.identity)
        except FhirError:
            return None

    def _new_plan(self) -> dict:
        r, ctx = self.record, self.ctx
        condition_ref = f"Condition/{ctx.condition['id']}"
        author = {"reference": ctx.doctor_role} if ctx.doctor_role else {"display": r.doctor or "随访医生"}
        ident = {"system": RECORD_SYSTEM, "value": f"{r.kind}-care-plan-{ctx.patient['id']}"}
        text = DISEASE_TEXT[r.kind]
        self.notes.append("the patient had no chronic-disease care plan: one was added")
        plan = {
            "resourceType": "CarePlan", "id": resource_id(ident["value"]),
            "meta": codes.profile(codes.PROFILES["CarePlan"]),
            "identifier": [ident],
            "status": "active", "intent": "plan",
            "category": [concept(codes.CARE_PLAN_CATEGORY, "chronic-disease-management",
                                 "慢性病患者健康管理", "慢性病患者健康管理")],
            "title": f"{text}患者健康管理",
            "subject": {"reference": ctx.patient_ref},
            "period": {"start": self.day},
            "author": author,
            "addresses": [{"reference": condition_ref}],
            "activity": [{"detail": {
                "kind": "Appointment", "code": {"text": "面对面随访"}, "status": "in-progress",
                "scheduledTiming": {"repeat": {"frequency": 1, "period": 3, "periodUnit": "mo"}},
                "description": "每3个月随访1次；控制不满意者2周内复诊",
            }}],
        }
        if ctx.managing_organization is not None:
            plan["extension"] = [{"url": MANAGING_ORGANIZATION_EXTENSION,
                                  "valueReference": {"reference": f"Organization/{ctx.managing_organization['id']}"}}]
        return plan

    def _targets(self) -> list[dict]:
        r = self.record
        out = []

        def quantity(measure: dict, value: float | None, ucum: str, unit: str, factor: float = 1) -> None:
            if value is not None:
                number = value * factor
                out.append({"measure": measure, "detailQuantity": _quantity(
                    int(number) if float(number).is_integer() and ucum != "kg" and ucum != "kg/m2" else number,
                    ucum, unit)})

        quantity(self._loinc("weight"), r.target_weight_kg, "kg", "kg")
        quantity(concept(codes.LOINC, "39156-5", "Body mass index (BMI) [Ratio]", "体质指数"), r.target_bmi,
                 "kg/m2", "kg/m2")
        quantity(self._item("smoking"), r.target_smoking_per_day, "/d", "支/天")
        quantity(self._item("drinking"), r.target_drinking_per_day, "mL/d", "ml/天", ML_PER_LIANG)
        quantity(self._item("exercise-sessions"), r.target_exercise_times_per_week, "/wk", "次/周")
        quantity(self._item("exercise-minutes"), r.target_exercise_minutes, "min", "分钟/次")
        quantity(self._item("staple-food"), r.target_staple_food_g_per_day, "g/d", "克/天")
        if r.target_salt_intake:
            out.append({"measure": self._item("salt-intake"),
                        "detailCodeableConcept": {"coding": [self._coded("salt_intake", r.target_salt_intake)]}})
        return out

    # ---- referrals ----------------------------------------------------------------------
    def _known(self, rid: str) -> bool:
        return any(s.get("id") == rid for s in self.ctx.referrals)

    def _referral(self, findings: list[Finding]) -> None:
        r = self.record
        if not (r.referral_reason or r.referral_to):
            return
        ident, sr_id = self._ident("referral")
        if self._known(sr_id):
            return  # written once; the receiving side may have moved it on since
        target = self._organization_named(r.referral_to)
        performer = {"reference": f"Organization/{target['id']}", "display": r.referral_to} if target else \
            {"display": r.referral_to or "未注明"}
        reason: dict = {"text": r.referral_reason or "转诊"}
        if findings:
            reason["coding"] = [{"system": system_of("referral-reason"), "code": findings[0].reason}]
        self._service_request(sr_id, ident, performer, [reason], "urgent" if findings else None)
        self._task("referral-task", sr_id, performer, findings)

    def _urgent_referral(self, findings: list[Finding]) -> str | None:
        r, ctx = self.record, self.ctx
        if not findings or r.referral_reason or r.referral_to:
            return None
        ident, sr_id = self._ident("urgent-referral")
        if ctx.referrals:
            if not self._known(sr_id):
                self.notes.append("urgent finding: a referral of the patient already exists, no new one")
            return None
        if ctx.township is None:
            self.notes.append("urgent finding, but the responsible township centre is not known: no Task")
            return None
        township = {"reference": f"Organization/{ctx.township['id']}", "display": ctx.township.get("name")}
        township = {k: v for k, v in township.items() if v}
        reasons = [{"coding": [{"system": system_of("referral-reason"), "code": f.reason}], "text": f.text}
                   for f in findings]
        self._service_request(sr_id, ident, township, reasons, "urgent", findings)
        task_id = self._task("urgent-referral-task", sr_id, township, findings)
        self.notes.append("urgent finding (" + "；".join(f.text for f in findings) + "): urgent-referral Task "
                          f"for {ctx.township.get('name') or ctx.township['id']}, due {due_date(r.visit_date):%Y-%m-%d}")
        return task_id

    def _service_request(self, sr_id: str, ident: dict, performer: dict, reasons: list[dict],
                         priority: str | None, findings: list[Finding] | None = None) -> None:
        requester = {"reference": self.ctx.doctor_role} if self.ctx.doctor_role else \
            {"reference": f"Organization/{self.ctx.managing_organization['id']}"}
        request = {
            "resourceType": "ServiceRequest", "id": sr_id,
            "meta": codes.profile("county-referral-request"),
            "extension": [{"url": REFERRAL_DIRECTION_EXTENSION,
                           "valueCoding": {"system": system_of("referral-direction"), "code": "upward",
                                           "display": "上转"}}],
            "identifier": [ident],
            "status": "active", "intent": "order",
            "category": [{"coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}],
                          "text": "转诊"}],
            "code": {"text": f"{DISEASE_TEXT[self.record.kind]}患者转诊"},
            "subject": {"reference": self.ctx.patient_ref},
            "encounter": {"reference": self.enc_ref},
            "authoredOn": self.day,
            "requester": requester,
            "performer": [performer],
            "reasonCode": reasons,
        }
        if priority:
            request["priority"] = priority
        refs = self.observation_refs
        if refs is None:
            refs = {key: f"Observation/{self._ident(key)[1]}" for key, held in (
                ("bp", self.record.sbp is not None), ("glucose", self.record.fasting_glucose is not None)) if held}
        if findings:
            wanted = {"urgent-blood-pressure": "bp", "urgent-glucose": "glucose"}
            request["reasonReference"] = [{"reference": refs[wanted[f.reason]]}
                                          for f in findings if wanted[f.reason] in refs]
        self._put(request)

    def _task(self, suffix: str, sr_id: str, owner: dict, findings: list[Finding]) -> str:
        ident, task_id = self._ident(suffix)
        requester = {"reference": f"Organization/{self.ctx.managing_organization['id']}"}
        task = {
            "resourceType": "Task", "id": task_id,
            "meta": codes.profile("county-referral-task"),
            "extension": [{"url": REFERRAL_DIRECTION_EXTENSION,
                           "valueCoding": {"system": system_of("referral-direction"), "code": "upward"}}],
            "identifier": [ident],
            "basedOn": [{"reference": f"ServiceRequest/{sr_id}"}],
            "status": "requested", "intent": "order",
            "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
            "focus": {"reference": f"ServiceRequest/{sr_id}"},
            "for": {"reference": self.ctx.patient_ref},
            "encounter": {"reference": self.enc_ref},
            "authoredOn": self.day,
            "requester": requester,
            "owner": owner,
        }
        if findings:
            task["priority"] = "urgent"
            task["description"] = "紧急转诊：" + "；".join(f.text for f in findings) + \
                f"；乡镇卫生院须在{self.thresholds.follow_up_days}天内随访"
            task["restriction"] = {"period": {"end": due_date(self.record.visit_date, self.thresholds).isoformat()}}
        self._put(task)
        return task_id

    def _organization_named(self, text: str | None) -> dict | None:
        """The organisation whose name starts the 转诊机构及科别 text (longest name wins)."""
        if not text:
            return None
        cache = self.organizations.named if isinstance(self.organizations, ImportCache) else {}
        if text not in cache:
            head = text.strip()[:2]
            found = search_resources(self.server, self.conn, "Organization", [("name", head)], self.identity, 200)
            named = [o for o in found if o.get("name") and text.strip().startswith(o["name"])]
            cache[text] = max(named, key=lambda o: len(o["name"]), default=None)
        return cache[text]

    # ---- a corrected record -----------------------------------------------------------------
    def _visit_resources(self) -> list[dict]:
        """The Observations and MedicationStatements stored for the visit's Encounter."""
        if isinstance(self.organizations, ImportCache):
            prefetched = self.organizations.visit_resources(self.enc_ref)
            if prefetched is not None:
                return prefetched
        return [found for rtype, param in (("Observation", "encounter"), ("MedicationStatement", "context"))
                for found in search_resources(self.server, self.conn, rtype, [(param, self.enc_ref)],
                                              self.identity, 100)]

    def _drop_unchanged(self, stored: list[dict]) -> None:
        """Leave out the PUTs of resources stored exactly so (a re-import): they would change
        nothing, and checking them again is the costly part of a write."""
        kept = []
        for entry in self.entries:
            resource = entry.get("resource")
            if entry["request"]["method"] == "PUT" and resource is not None:
                current = self._stored(resource["resourceType"], resource["id"], stored)
                if current is not None and _same(current, resource):
                    continue
            kept.append(entry)
        self.entries = kept

    def _stale_deletes(self, stored: list[dict]) -> None:
        """DELETE the Observations and MedicationStatements an earlier version of the record
        wrote and this one no longer has."""
        for found in stored:
            ours = any(i.get("system") == RECORD_SYSTEM for i in found.get("identifier", []))
            if ours and (found["resourceType"], found["id"]) not in self.written:
                url = f"{found['resourceType']}/{found['id']}"
                self.entries.append({"request": {"method": "DELETE", "url": url}})


def _same(stored: dict, resource: dict) -> bool:
    """The same content, apart from the server's meta (as the store's no-op update compares)."""
    def strip(r: dict) -> dict:
        meta = {k: v for k, v in (r.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
        return {**{k: v for k, v in r.items() if k != "meta"}, "meta": meta}

    return strip(stored) == strip(resource)


def _quantity(value: float | int, ucum: str, unit: str) -> dict:
    return {"value": value, "unit": unit, "system": codes.UCUM, "code": ucum}
