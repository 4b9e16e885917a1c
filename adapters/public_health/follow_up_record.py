"""One follow-up record as the public-health system holds it: one filled-in national form.

The forms are 高血压患者随访服务记录表 (``kind="hypertension"``) and 2型糖尿病患者随访服务记录表
(``kind="diabetes"``) of the national basic public-health service specification (3rd
edition). Field names are the form's fields in English snake_case; values are typed: dates
are ``date``, measurements ``float``/``int``, and every coded answer is the form's code
string (``"1"``, ``"2"`` ...; the words for each code are in
``mappings/public_health/codes.csv``, read by ``adapters.public_health.form_codes``).
Units are the form's own: weight kg, BMI kg/m2, smoking cigarettes a day (支), drinking
liang a day (两, 50 ml of liquor), exercise sessions a week and minutes a session, staple
food grams a day, fasting glucose mmol/L, HbA1c %.

Conversions (for the CDA adapter and anyone else who has a record):

* ``adapters.public_health.follow_up_bundle.to_bundle(server, record)`` -> a FHIR
  transaction Bundle (dict) for ``run_transaction``: the follow-up Encounter, its
  Observations, MedicationStatements, the patient's CarePlan and Goal, the referral
  (ServiceRequest + Task) and, for an urgent finding, the urgent-referral Task. It looks the
  patient up in the store (by resident ID, else health-record number) and raises
  ``RecordError`` (a reason a person can read) when the record cannot be used.
* ``adapters.public_health.follow_up_import.import_record(server, record)`` runs that Bundle
  in one transaction and returns a ``RowResult`` (what was created / updated / unchanged).
* ``adapters.public_health.from_fhir.from_fhir(server, encounter, kind=None)`` ->
  ``FollowUpRecord`` from a stored follow-up Encounter (dict, or ``"Encounter/id"``) and the
  resources around it, whatever system wrote them;
  ``adapters.public_health.export.export(server, organization, start, end).records`` lists
  them for an organisation's patients and a period.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date

__all__ = ["FollowUpRecord", "Medication", "RecordError", "KINDS", "HYPERTENSION", "DIABETES",
           "record_fields"]

HYPERTENSION = "hypertension"
DIABETES = "diabetes"
KINDS = (HYPERTENSION, DIABETES)


class RecordError(ValueError):
    """A record (or a row) that cannot be used; the message says why, in plain English."""


@dataclass(slots=True)
class Medication:
    """One line of 用药情况: 药物名称 and 用法用量 (e.g. "每日1次，每次5mg")."""

    name: str
    usage: str | None = None


@dataclass(slots=True)
class FollowUpRecord:
    kind: str  # "hypertension" | "diabetes"
    visit_date: date | None = None  # 随访日期
    name: str | None = None  # 姓名
    resident_id: str | None = None  # 身份证号 (18 characters)
    health_record_number: str | None = None  # 健康档案编号 (17 digits)
    visit_mode: str | None = None  # 随访方式: 1 门诊 2 家庭 3 电话
    symptoms: list[str] = field(default_factory=list)  # 症状 codes (1 无症状 ...)
    symptoms_other: str | None = None  # 症状 其他
    # 体征
    sbp: int | None = None  # 收缩压 mmHg
    dbp: int | None = None  # 舒张压 mmHg
    weight_kg: float | None = None  # 体重
    target_weight_kg: float | None = None  # 目标体重
    bmi: float | None = None  # 体质指数 kg/m2
    target_bmi: float | None = None
    heart_rate: int | None = None  # 心率 (hypertension form)
    other_signs: str | None = None  # 体征 其他
    # 生活方式指导
    smoking_per_day: int | None = None  # 日吸烟量 支
    target_smoking_per_day: int | None = None
    drinking_per_day: float | None = None  # 日饮酒量 两
    target_drinking_per_day: float | None = None
    exercise_times_per_week: int | None = None  # 运动 次/周
    exercise_minutes: int | None = None  # 运动 分钟/次
    target_exercise_times_per_week: int | None = None
    target_exercise_minutes: int | None = None
    salt_intake: str | None = None  # 摄盐情况: 1 轻 2 中 3 重 (hypertension form)
    target_salt_intake: str | None = None
    psychological_adjustment: str | None = None  # 心理调整: 1 良好 2 一般 3 差
    compliance_with_advice: str | None = None  # 遵医行为: 1 良好 2 一般 3 差
    auxiliary_exams: str | None = None  # 辅助检查 (free text)
    medication_compliance: str | None = None  # 服药依从性: 1 规律 2 间断 3 不服药
    adverse_reactions: str | None = None  # 药物不良反应: 1 无 2 有
    adverse_reactions_text: str | None = None  # 药物不良反应 有: what
    visit_classification: str | None = None  # 此次随访分类: 1 控制满意 ... 4 并发症
    medications: list[Medication] = field(default_factory=list)  # 用药情况
    referral_reason: str | None = None  # 转诊 原因
    referral_to: str | None = None  # 转诊 机构及科别
    next_visit_date: date | None = None  # 下次随访日期
    doctor: str | None = None  # 随访医生签名
    # diabetes form only
    dorsalis_pedis_pulse: str | None = None  # 足背动脉搏动: 1 触及正常 2 减弱 3 消失
    dorsalis_pedis_side: str | None = None  # for 2/3: both | left | right
    staple_food_g_per_day: float | None = None  # 主食 克/天
    target_staple_food_g_per_day: float | None = None
    fasting_glucose: float | None = None  # 空腹血糖值 mmol/L
    hba1c: float | None = None  # 糖化血红蛋白 %
    hba1c_date: date | None = None  # 检查日期
    hypoglycaemia: str | None = None  # 低血糖反应: 1 无 2 偶尔 3 频繁
    insulin_type: str | None = None  # 胰岛素 种类
    insulin_usage: str | None = None  # 胰岛素 用法和用量
    # where it came from (reports)
    source: str | None = None  # file name or system
    source_line: int | None = None  # line (CSV), row (Excel) or item number (JSON), 1-based

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RecordError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")

    def __repr__(self) -> str:  # no personal data in logs
        return (f"FollowUpRecord(kind={self.kind!r}, visit_date={self.visit_date!r}, "
                f"source={self.source!r}, source_line={self.source_line!r})")


def record_fields() -> tuple[str, ...]:
    """The record's field names, in form order (``kind`` and the source fields excluded)."""
    return tuple(f.name for f in fields(FollowUpRecord)
                 if f.name not in ("kind", "source", "source_line"))
