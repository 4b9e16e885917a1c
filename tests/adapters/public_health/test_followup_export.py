"""Export back to the public-health system (issue 6, item 4): the export of a period reproduces the
imported records; it also carries visits other systems wrote, lab results and hospital visits;
each layout (CSV, Excel, JSON) imports again without changing anything."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from adapters.public_health.columns import column_map
from adapters.public_health.export import export, to_csv, to_json, to_xlsx
from adapters.public_health.follow_up_import import import_file
from adapters.public_health.follow_up_record import FollowUpRecord, RecordError
from adapters.public_health.reading import detect_format, read_rows, to_record
from fhir_server.auth.identity import SYSTEM
from fhir_server.demo import codes
from tests.adapters.public_health.conftest import FILES
from tests.adapters.public_health.county import PATIENTS

IMPORTS = [("hypertension.csv", "hypertension"), ("hypertension-corrected.xlsx", "hypertension"),
           ("diabetes-gb18030.csv", "diabetes"), ("diabetes.json", "diabetes")]
YEAR = (date(2025, 1, 1), date(2025, 12, 31))
BY_RESIDENT_ID = {p[3]: (pid, p) for pid, p in PATIENTS.items()}
BY_HEALTH_RECORD = {p[4]: (pid, p) for pid, p in PATIENTS.items()}


def _import_all(server) -> None:
    for name, kind in IMPORTS:
        import_file(server, (FILES / name).read_bytes(), kind=kind, name=name)


def _expected(kind: str) -> dict[tuple, FollowUpRecord]:
    """The last usable row of each visit in the files, with the patient's identifiers filled in."""
    out: dict[tuple, FollowUpRecord] = {}
    for name, file_kind in IMPORTS:
        if file_kind != kind:
            continue
        data = (FILES / name).read_bytes()
        for row in read_rows(data, detect_format(name, data), kind):
            try:
                record = to_record(row, column_map(kind))
            except RecordError:
                continue
            pid, (person, _, _, resident, health, _) = (BY_RESIDENT_ID.get(record.resident_id)
                                                        or BY_HEALTH_RECORD[record.health_record_number])
            filled = replace(record, name=person, resident_id=resident, health_record_number=health,
                             source=None, source_line=None)
            if filled.resident_id == "43053019580314025X" and filled.visit_date == date(2025, 6, 12):
                filled.health_record_number = health
            out[(pid, record.visit_date)] = filled
    return out


def _gp_name(server, pid: str) -> str:
    patient = server.resources.read("Patient", pid, identity=SYSTEM)
    role = server.resources.read("PractitionerRole", patient["generalPractitioner"][0]["reference"].split("/")[1],
                                 identity=SYSTEM)
    practitioner = server.resources.read("Practitioner", role["practitioner"]["reference"].split("/")[1],
                                         identity=SYSTEM)
    return practitioner["name"][0]["text"]


@pytest.mark.parametrize("kind", ["hypertension", "diabetes"])
def test_export_reproduces_the_imported_records(county, kind):
    _import_all(county)
    expected = _expected(kind)
    exported = {}
    for organization in ("Organization/org-th-01", "Organization/org-th-02"):
        for record in export(county, organization, *YEAR).records[kind]:
            pid = BY_RESIDENT_ID[record.resident_id][0]
            exported[(pid, record.visit_date)] = replace(record, source=None)
    assert sorted(exported) == sorted(expected)
    for key, want in expected.items():
        got = exported[key]
        if want.doctor is None:  # a blank 随访医生: the export names the patient's doctor
            assert got.doctor == _gp_name(county, key[0])
            got = replace(got, doctor=None)
        assert got == want, key


def test_export_is_limited_to_the_organisation_and_the_period(county):
    _import_all(county)
    th01 = export(county, "org-th-01", *YEAR)
    assert {r.resident_id for r in th01.records["hypertension"]} == {"43053019580314025X", "430524194907300113"}
    assert th01.records["diabetes"] and all(r.resident_id == "430524194907300113" for r in th01.records["diabetes"])
    village = export(county, "Organization/org-vc-01-02", *YEAR)
    assert {r.resident_id for r in village.records["hypertension"]} == {"430524194907300113"}
    summer = export(county, "org-th-01", date(2025, 6, 1), date(2025, 6, 30))
    assert [r.visit_date for r in summer.records["hypertension"]] == [date(2025, 6, 12), date(2025, 6, 15)]
    assert export(county, "org-th-03", *YEAR).records == {"hypertension": [], "diabetes": []}


def test_export_carries_other_systems_visits_labs_and_hospital_stays(county):
    _import_all(county)
    # a follow-up the demo (or a village tablet over FHIR) wrote: no identifier of this adapter
    county.resources.create({
        "resourceType": "Encounter", "meta": codes.profile("county-follow-up-encounter"),
        "extension": [{"url": codes.VISIT_MODE_EXTENSION, "valueCoding": {"system": codes.VISIT_MODE, "code": "1"}},
                      {"url": codes.VISIT_CLASSIFICATION_EXTENSION,
                       "valueCoding": {"system": codes.VISIT_CLASSIFICATION, "code": "1"}}],
        "status": "finished", "class": {"system": codes.ACT_CODE, "code": "AMB"},
        "type": [{"coding": [{"system": codes.ENCOUNTER_TYPE, "code": "hypertension-follow-up"}]},
                 {"coding": [{"system": codes.ENCOUNTER_TYPE, "code": "diabetes-follow-up"}]}],
        "subject": {"reference": "Patient/pat-ph-3"},
        "participant": [{"individual": {"reference": "PractitionerRole/role-vc-01-02"}}],
        "period": {"start": "2025-10-10T09:00:00+08:00"},
        "serviceProvider": {"reference": "Organization/org-vc-01-02"}}, res_id="enc-demo-1", identity=SYSTEM)
    county.resources.create({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": codes.LOINC, "code": "1558-6"}], "text": "空腹血糖"},
        "subject": {"reference": "Patient/pat-ph-3"}, "encounter": {"reference": "Encounter/enc-demo-1"},
        "effectiveDateTime": "2025-10-10T09:05:00+08:00",
        "valueQuantity": {"value": 126, "unit": "mg/dL", "system": codes.UCUM, "code": "mg/dL"}},
        res_id="obs-demo-glu", identity=SYSTEM)
    county.resources.create({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": codes.LOINC, "code": "2093-3"}], "text": "总胆固醇"},
        "subject": {"reference": "Patient/pat-ph-1"}, "effectiveDateTime": "2025-05-06T08:00:00+08:00",
        "issued": "2025-05-06T14:00:00+08:00", "performer": [{"reference": "Organization/org-county-lab"}],
        "valueQuantity": {"value": 212, "unit": "mg/dL", "system": codes.UCUM, "code": "mg/dL"},
        "referenceRange": [{"high": {"value": 200, "unit": "mg/dL", "system": codes.UCUM, "code": "mg/dL"}}]},
        res_id="obs-lab-chol", identity=SYSTEM)
    county.resources.create({
        "resourceType": "Encounter", "status": "finished", "class": {"system": codes.ACT_CODE, "code": "IMP"},
        "type": [{"text": "心内科"}], "subject": {"reference": "Patient/pat-ph-1"},
        "period": {"start": "2025-06-13T10:00:00+08:00", "end": "2025-06-20T09:00:00+08:00"},
        "reasonCode": [{"text": "高血压3级"}],
        "serviceProvider": {"reference": "Organization/org-county-hospital"}}, res_id="enc-hosp-1", identity=SYSTEM)

    result = export(county, "org-th-01", *YEAR)
    demo = [r for r in result.records["hypertension"] + result.records["diabetes"]
            if r.source == "Encounter/enc-demo-1"]
    assert [(r.kind, r.visit_date, r.visit_mode, r.visit_classification) for r in demo] == [
        ("hypertension", date(2025, 10, 10), "1", "1"), ("diabetes", date(2025, 10, 10), "1", "1")]
    assert demo[1].fasting_glucose == 7.0  # 126 mg/dL
    labs = result.tables["lab_results"]
    assert [dict(zip(labs.fields, row, strict=True)) for row in labs.rows] == [{
        "name": "王建国", "resident_id": "43053019580314025X", "health_record_number": "43053010110100001",
        "date": "2025-05-06T08:00:00+08:00", "item": "总胆固醇", "loinc": "2093-3", "value": 212,
        "unit": "mg/dL", "reference_range": "-200", "interpretation": None, "performer": "青山县人民医院检验科",
        "issued": "2025-05-06T14:00:00+08:00", "id": "Observation/obs-lab-chol"}]  # not the follow-up glucoses
    visits = result.tables["hospital_visits"]
    assert [dict(zip(visits.fields, row, strict=True)) for row in visits.rows] == [{
        "name": "王建国", "resident_id": "43053019580314025X", "health_record_number": "43053010110100001",
        "class": "住院", "organization": "青山县人民医院", "type": "心内科", "start": "2025-06-13T10:00:00+08:00",
        "end": "2025-06-20T09:00:00+08:00", "reason": "高血压3级", "status": "finished",
        "id": "Encounter/enc-hosp-1"}]


@pytest.mark.parametrize("layout", ["csv", "xlsx", "json"])
def test_each_layout_imports_again_unchanged(county, layout):
    _import_all(county)
    result = export(county, "org-th-01", *YEAR)
    for kind in ("hypertension", "diabetes"):
        if layout == "csv":
            data, name = to_csv(result.tables[kind]), f"{kind}.csv"
        elif layout == "xlsx":
            data, name = to_xlsx(result), "export.xlsx"
        else:
            data, name = to_json(result), "export.json"
        report = import_file(county, data, kind=kind, name=name)
        assert report.unknown_headers == []
        assert {r.status for r in report.rows} == {"unchanged"}, [(r.line, r.status, r.reason) for r in report.rows]
        assert len(report.rows) == len(result.records[kind])


def test_csv_in_gb18030(county):
    _import_all(county)
    table = export(county, "org-th-02", *YEAR).tables["diabetes"]
    data = to_csv(table, "gb18030")
    assert data.decode("gb18030").startswith("姓名,身份证号,健康档案编号,随访日期")
    report = import_file(county, data, kind="diabetes", name="back.csv")
    assert report.encoding == "gb18030" and report.counts["unchanged"] == 2


def test_export_of_the_demo_county(server):
    """Follow-ups the demo wrote (no identifier of this adapter, both forms on one Encounter, glucose
    in mg/dL for some patients) come out as records with their readings and the yearly labs."""
    from fhir_server.demo.county import generate_county
    from fhir_server.demo.loader import write_batch

    resources = [r for batch in generate_county(12) for r in batch if write_batch(server, [r])]
    encounters = {r["id"]: r for r in resources if r["resourceType"] == "Encounter"
                  and r["type"][0]["coding"][0]["code"].endswith("-follow-up")}
    readings = {}
    for obs in (r for r in resources if r["resourceType"] == "Observation" and "encounter" in r):
        readings.setdefault(obs["encounter"]["reference"].split("/")[1], []).append(obs)
    exported = []
    for township in sorted({r["id"] for r in resources if r["id"].startswith("org-th-")}):
        exported += export(server, township, date(2025, 1, 1), date(2026, 6, 30)).records["hypertension"]
    hypertension = [e for e in encounters.values()
                    if any(t["coding"][0]["code"] == "hypertension-follow-up" for t in e["type"])]
    assert len(exported) == len(hypertension) > 0
    for record in exported:
        encounter_id = record.source.split("/")[1]
        bp = next(o for o in readings[encounter_id] if o["code"]["coding"][0]["code"] == "85354-9")
        assert (record.sbp, record.dbp) == tuple(c["valueQuantity"]["value"] for c in bp["component"])
        assert record.visit_mode == "1" and record.visit_classification in ("1", "2")
        assert record.doctor  # the village doctor's name, from the PractitionerRole
