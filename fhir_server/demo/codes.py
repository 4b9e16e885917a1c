"""Code systems, codes and units the synthetic county writes, in one place.

Standard systems (LOINC, UCUM, ICD-10, HL7 terminology) are used where a code exists;
the few local concepts (follow-up type, practitioner role, self-management group,
administrative division) use code systems under ``LOCAL_BASE``, a placeholder the
project can change in one line.
"""

from __future__ import annotations

LOCAL_BASE = "https://county-fhir.example.org/fhir"

# Identifier systems (China national OIDs, as urn:oid:)
OID_HEALTH_RECORD = "urn:oid:2.16.156.10011.1.2"
OID_RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"
OID_INSTITUTION = "urn:oid:2.16.156.10011.1.5"

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE_SECTION = "http://terminology.hl7.org/CodeSystem/v2-0074"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
LOCATION_PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"

# Local code systems
ENCOUNTER_TYPE = f"{LOCAL_BASE}/CodeSystem/chronic-disease-encounter-type"
PRACTITIONER_ROLE = f"{LOCAL_BASE}/CodeSystem/practitioner-role"
CARE_PLAN_CATEGORY = f"{LOCAL_BASE}/CodeSystem/care-plan-category"
GROUP_TYPE = f"{LOCAL_BASE}/CodeSystem/group-type"
GROUP_CHARACTERISTIC = f"{LOCAL_BASE}/CodeSystem/group-characteristic"
# 12-digit statistical division code: GB/T 2260 county (6) + township (3) + village (3)
ADMINISTRATIVE_DIVISION = f"{LOCAL_BASE}/CodeSystem/administrative-division"
ADDRESS_DIVISION_EXTENSION = f"{LOCAL_BASE}/StructureDefinition/address-division-code"
VISIT_MODE = f"{LOCAL_BASE}/CodeSystem/follow-up-visit-mode"
VISIT_CLASSIFICATION = f"{LOCAL_BASE}/CodeSystem/follow-up-classification"
VISIT_MODE_EXTENSION = f"{LOCAL_BASE}/StructureDefinition/visit-mode"
VISIT_CLASSIFICATION_EXTENSION = f"{LOCAL_BASE}/StructureDefinition/visit-classification"
NEXT_VISIT_EXTENSION = f"{LOCAL_BASE}/StructureDefinition/next-visit-date"


def profile(name: str) -> dict:
    """``meta`` claiming the county profile ``name`` (profiles/local/StructureDefinition-<name>.json)."""
    return {"profile": [f"{LOCAL_BASE}/StructureDefinition/{name}"]}


# The county profile each kind of generated resource claims.
PROFILES = {
    "Patient": "county-patient",
    "Organization": "county-organization",
    "Practitioner": "county-practitioner",
    "PractitionerRole": "county-practitioner-role",
    "Condition": "county-condition",
    "CarePlan": "county-care-plan",
    "follow-up": "county-follow-up-encounter",
    "DiagnosticReport": "county-diagnostic-report",
    "Group": "county-self-management-group",
}

# Managed conditions: key -> (ICD-10 code, English display, Chinese text)
HYPERTENSION = "hypertension"
DIABETES = "diabetes"
CONDITIONS = {
    HYPERTENSION: ("I10", "Essential (primary) hypertension", "原发性高血压"),
    DIABETES: ("E11.9", "Type 2 diabetes mellitus without complications", "2型糖尿病"),
}
# Encounter types (follow-ups and the annual screening): key -> (code, Chinese display)
ENCOUNTER_TYPES = {
    HYPERTENSION: ("hypertension-follow-up", "高血压患者随访"),
    DIABETES: ("diabetes-follow-up", "2型糖尿病患者随访"),
    "screening": ("blood-pressure-screening", "35岁以上居民首诊测血压"),
}

# Follow-up visit classification (WS 364 CV05.10.012): code -> Chinese display
VISIT_CLASSIFICATIONS = {"1": "控制满意", "2": "控制不满意"}
# Days to the next follow-up after a visit of that classification (DOMAIN.md: about 3 months
# when controlled, within 2 weeks when not).
NEXT_VISIT_DAYS = {"1": 90, "2": 14}

# LOINC codes: key -> (code, display, Chinese text)
LOINC_CODES = {
    "bp": ("85354-9", "Blood pressure panel with all children optional", "血压"),
    "sbp": ("8480-6", "Systolic blood pressure", "收缩压"),
    "dbp": ("8462-4", "Diastolic blood pressure", "舒张压"),
    "weight": ("29463-7", "Body weight", "体重"),
    "heart_rate": ("8867-4", "Heart rate", "心率"),
    "glucose_mass": ("1558-6", "Fasting glucose [Mass/volume] in Serum or Plasma", "空腹血糖"),
    "glucose_moles": ("14771-0", "Fasting glucose [Moles/volume] in Serum or Plasma", "空腹血糖"),
    "hba1c": ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "糖化血红蛋白"),
    "cholesterol": ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "总胆固醇"),
    "creatinine": ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "肌酐"),
    "lab_report": ("11502-2", "Laboratory report", "慢病年度检验报告"),
}
# The Observation profile of each LOINC key
OBSERVATION_PROFILES = {
    "bp": "county-blood-pressure",
    "weight": "county-body-weight",
    "heart_rate": "county-heart-rate",
    "glucose_mass": "county-fasting-glucose",
    "glucose_moles": "county-fasting-glucose",
    "hba1c": "county-hba1c",
    "cholesterol": "county-lipid",
    "creatinine": "county-creatinine",
}
# UCUM units: code -> human-readable unit
UNITS = {
    "mm[Hg]": "mmHg",
    "kg": "kg",
    "/min": "次/分",
    "mg/dL": "mg/dL",
    "mmol/L": "mmol/L",
    "%": "%",
}

# mmol/L -> mg/dL for glucose (molar mass 180.16 g/mol)
GLUCOSE_MG_PER_DL_PER_MMOL_PER_L = 18.016
