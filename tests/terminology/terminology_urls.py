"""Canonical URLs of the shipped terminology, for the tests."""

from __future__ import annotations

BASE = "https://county-fhir.example.org/fhir"
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
SEX = "urn:oid:2.16.156.10011.2.3.3.4"
ADMINISTRATIVE_GENDER = "http://hl7.org/fhir/administrative-gender"
SEX_MAP = f"{BASE}/ConceptMap/gb-t-2261-1-sex-to-administrative-gender"
LAB_MAP = f"{BASE}/ConceptMap/county-hospital-lab-to-loinc"


def vs(name: str) -> str:
    return f"{BASE}/ValueSet/{name}"


def cs(name: str) -> str:
    return f"{BASE}/CodeSystem/{name}"
