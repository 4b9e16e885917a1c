"""Follow-up records of the county basic public-health system (基本公卫系统).

The national forms 高血压患者随访服务记录表 and 2型糖尿病患者随访服务记录表 (national basic
public-health service specification, 3rd edition) come in as CSV, Excel or JSON, become
FHIR resources in one transaction per record, and go back out in the same layouts.

Modules:

* ``follow_up_record``: the record (one filled-in form), shared with the CDA adapter.
* ``form_codes``: the form's coded answers (digits <-> Chinese words), read from
  ``mappings/public_health/codes.csv``.
* ``columns``: the column map (headers -> record fields), ``mappings/public_health/columns.csv``.
* ``reading``: files (CSV UTF-8/GB18030, .xlsx, JSON) -> rows -> records or row errors.
* ``patient_context``: what the store knows around a record (the patient, their organisations,
  doctor, Condition, CarePlan, the visit if already recorded); ``ImportCache`` reads it for a
  whole file at once.
* ``follow_up_bundle``: record -> FHIR transaction Bundle (``to_bundle``).
* ``urgent_referral``: the urgent-finding rule (DOMAIN.md thresholds) and its Task.
* ``follow_up_import``: runs the transactions, idempotently, and reports row by row.
* ``from_fhir``: stored resources -> records (``from_fhir``), whatever system wrote them.
* ``export``: records, lab results and hospital visits of an organisation's patients
  for a period, as CSV / Excel / JSON.
"""
