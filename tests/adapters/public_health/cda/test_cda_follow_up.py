"""Hypertension and diabetes follow-up documents (WS/T 483.12 / 483.13 layout).

The document maps onto the same FollowUpRecord as the CSV import, so: FHIR -> CDA -> FHIR
keeps every field; a CDA import writes exactly what a CSV import of the same visit writes;
hand-written documents in the WS/T 500 style are read field by field."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest
from lxml import etree
from sqlalchemy import select

from adapters.public_health.cda.document_export import export_follow_up
from adapters.public_health.cda.document_import import import_document
from adapters.public_health.cda.follow_up_document import cda_to_follow_up
from adapters.public_health.cda.parse import NS, CdaDocumentError, parse_document
from adapters.public_health.follow_up_import import import_record
from adapters.public_health.follow_up_record import FollowUpRecord, Medication
from adapters.public_health.from_fhir import from_fhir
from fhir_server.auth.identity import SYSTEM
from fhir_server.errors import FhirError
from fhir_server.storage.schema import resource
from tests.adapters.public_health.cda.samples import FILES, diabetes_visit, hypertension_visit
from tests.adapters.public_health.county import load_county
from tests.conftest import _truncate



FORM_FIELDS = [f.name for f in dataclasses.fields(FollowUpRecord) if f.name not in ("source", "source_line")]


def _stored_encounter(server, record: FollowUpRecord) -> str:
    result = import_record(server, record, SYSTEM)
    assert result.status == "created", result.reason
    return result.encounter.split("/")[1]


def _snapshot(server) -> dict[tuple[str, str], dict]:
    """Every current resource, without the server's version stamps."""
    with server.db.read() as conn:
        rows = conn.execute(select(resource.c.res_type, resource.c.res_id, resource.c.content)
                            .where(resource.c.deleted.is_(False))).all()
    out = {}
    for rtype, rid, content in rows:
        body = orjson.loads(content)
        meta = {k: v for k, v in body.pop("meta", {}).items() if k not in ("versionId", "lastUpdated")}
        out[(rtype, rid)] = {**body, "meta": meta}
    return out


@pytest.mark.parametrize("visit", [hypertension_visit, diabetes_visit], ids=["hypertension", "diabetes"])
def test_follow_up_round_trip_fhir_cda_fhir_keeps_every_field(county, visit):
    server = county
    record = visit()
    encounter_id = _stored_encounter(server, record)
    stored = from_fhir(server, f"Encounter/{encounter_id}")
    xml = export_follow_up(server, encounter_id)

    back = cda_to_follow_up(parse_document(xml), f"{record.kind}-follow-up")
    for name in FORM_FIELDS:
        assert getattr(back, name) == getattr(stored, name), name
    filled = [name for name in FORM_FIELDS if getattr(stored, name) not in (None, [], "")]
    assert len(filled) >= 35  # the visit really fills the form (not a round trip of blanks)

    # and back into FHIR: the document is the stored visit, so importing it changes nothing
    before = _snapshot(server)
    result = import_document(server, xml, what="visit.xml")
    assert result.status == "unchanged"
    assert _snapshot(server) == before


@pytest.mark.parametrize("visit", [hypertension_visit, diabetes_visit], ids=["hypertension", "diabetes"])
def test_cda_import_writes_exactly_what_the_csv_import_writes(county, visit):
    server = county
    record = visit()
    encounter_id = _stored_encounter(server, record)
    xml = export_follow_up(server, encounter_id)
    by_csv = _snapshot(server)

    _truncate(server)
    load_county(server)
    result = import_document(server, xml, what="visit.xml")
    assert result.status == "created" and result.resources[0] == f"Encounter/{encounter_id}"
    assert _snapshot(server) == by_csv


def test_follow_up_document_layout(county):
    server = county
    encounter_id = _stored_encounter(server, hypertension_visit())
    xml = export_follow_up(server, encounter_id)
    root = parse_document(xml)
    assert root.xpath("cda:templateId/@root", namespaces=NS) == ["2.16.156.10011.2.1.1.12"]
    assert root.xpath("string(cda:title)", namespaces=NS) == "高血压患者随访服务"
    # the patient's home address and phone, in the schema's order inside patientRole
    role = root.xpath("cda:recordTarget/cda:patientRole", namespaces=NS)[0]
    assert [etree.QName(child).localname for child in role] == ["id", "addr", "telecom", "patient"]
    assert [(etree.QName(part).localname, part.text) for part in role.xpath("cda:addr[@use='H']/*", namespaces=NS)] == [
        ("state", "湖南省"), ("city", "邵阳市"), ("county", "青山县"), ("houseNumber", "青山镇桃花村12号")]
    assert role.xpath("cda:telecom/@value", namespaces=NS) == ["13807390001"]
    assert root.xpath("cda:author/cda:time/@value", namespaces=NS) == ["20260310"]
    assert root.xpath("string(cda:author/cda:assignedAuthor/cda:assignedPerson/cda:name)", namespaces=NS) == "刘春生"
    sbp = root.xpath("//cda:section[cda:code/@code='8716-3']//cda:observation"
                     "[cda:code/@code='DE04.10.174.00']/cda:value", namespaces=NS)[0]
    assert (sbp.get("value"), sbp.get("unit"), sbp.get("{http://www.w3.org/2001/XMLSchema-instance}type")) == \
        ("150", "mmHg", "PQ")
    target = root.xpath("//cda:observation[@moodCode='GOL'][cda:code/@code='DE04.10.188.00']/cda:value/@value",
                        namespaces=NS)
    assert target == ["68"]
    mode = root.xpath("//cda:observation[cda:code/@code='DE06.00.108.00']", namespaces=NS)[0]
    assert mode.xpath("cda:effectiveTime/@value", namespaces=NS) == ["20260310"]
    assert mode.xpath("cda:value/@code", namespaces=NS) == ["1"]
    assert mode.xpath("cda:value/@displayName", namespaces=NS) == ["门诊"]
    drugs = root.xpath("//cda:substanceAdministration/cda:consumable//cda:name/text()", namespaces=NS)
    assert drugs == ["氨氯地平片", "氢氯噻嗪片"]
    assert "每日1次，每次12.5mg" in xml.decode("utf-8")
    # the organisation that did the follow-up is the author's and the custodian's
    org = root.xpath("cda:author/cda:assignedAuthor/cda:representedOrganization/cda:id/@extension", namespaces=NS)
    assert org and org == root.xpath("cda:custodian//cda:representedCustodianOrganization/cda:id/@extension",
                                     namespaces=NS)


def test_hand_written_hypertension_document_is_imported_field_by_field(county):
    server = county
    result = import_document(server, (FILES / "hypertension-follow-up.xml").read_bytes(), what="gw.xml")
    assert result.kind == "hypertension-follow-up" and result.status == "created"
    encounter = server.resources.read("Encounter", result.resources[0].split("/")[1], identity=SYSTEM)
    assert encounter["subject"] == {"reference": "Patient/pat-ph-1"}
    assert encounter["period"]["start"].startswith("2026-05-20")
    record = from_fhir(server, encounter)
    expected = FollowUpRecord(
        kind="hypertension", visit_date=date(2026, 5, 20), name="王建国", resident_id="43053019580314025X",
        health_record_number="43053010110100001", visit_mode="3", symptoms=["1"], sbp=138, dbp=86,
        weight_kg=69.0, target_weight_kg=68.0, bmi=24.6, target_bmi=24.0, heart_rate=72,
        smoking_per_day=5, target_smoking_per_day=0, drinking_per_day=1.0, target_drinking_per_day=0.0,
        exercise_times_per_week=5, exercise_minutes=30, target_exercise_times_per_week=5,
        target_exercise_minutes=30, salt_intake="1", target_salt_intake="1", psychological_adjustment="1",
        compliance_with_advice="1", medication_compliance="1", adverse_reactions="1", visit_classification="1",
        medications=[Medication("硝苯地平控释片", "每日1次，每次30mg")], next_visit_date=date(2026, 8, 18),
        doctor="刘春生",
    )
    for name in FORM_FIELDS:
        assert getattr(record, name) == getattr(expected, name), name
    observations = {o["code"]["coding"][0]["code"]: o for o in _observations(server, encounter["id"])}
    panel = observations["85354-9"]
    assert {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in panel["component"]} == \
        {"8480-6": 138, "8462-4": 86}


def test_hand_written_diabetes_document_with_blood_pressure_organizer(county):
    server = county
    result = import_document(server, (FILES / "diabetes-follow-up.xml").read_bytes(), what="dm.xml")
    assert result.kind == "diabetes-follow-up" and result.status == "created"
    encounter = server.resources.read("Encounter", result.resources[0].split("/")[1], identity=SYSTEM)
    record = from_fhir(server, encounter)
    assert (record.sbp, record.dbp) == (142, 88)  # read from the WS/T 500 style organizer
    assert record.fasting_glucose == 7.8 and record.hba1c == 7.1 and record.hba1c_date == date(2026, 5, 2)
    assert (record.dorsalis_pedis_pulse, record.dorsalis_pedis_side) == ("1", None)
    assert record.hypoglycaemia == "1" and record.staple_food_g_per_day == 250
    assert record.insulin_type == "甘精胰岛素注射液" and record.insulin_usage == "睡前10单位皮下注射"
    assert record.medications == [Medication("二甲双胍缓释片", "每日1次，每次1.0g")]
    assert record.symptoms == ["2", "3"] and record.visit_mode == "1" and record.doctor == "陈玉梅"
    glucose = next(o for o in _observations(server, encounter["id"])
                   if o["code"]["coding"][0]["code"] in ("14771-0", "1558-6"))
    assert glucose["valueQuantity"]["value"] == 7.8 and glucose["valueQuantity"]["unit"] in ("mmol/L", "mmol/l")
    assert import_document(server, (FILES / "diabetes-follow-up.xml").read_bytes()).status == "unchanged"


def _observations(server, encounter_id: str) -> list[dict]:
    from adapters.public_health.patient_context import search_resources

    with server.db.read() as conn:
        return search_resources(server, conn, "Observation", [("encounter", f"Encounter/{encounter_id}")], SYSTEM)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('value="138" unit="mmHg"', 'value="138" unit="kPa"', "unit 'kPa', expected 'mmHg'"),
    ('value="138" unit="mmHg"', 'value="high" unit="mmHg"', "'high' is not a number"),
    ('code="3" codeSystem="2.16.156.10011.2.3.1.183"', 'code="7" codeSystem="2.16.156.10011.2.3.1.183"',
     "'7' is not one of its codes (1 门诊; 2 家庭; 3 电话)"),
    ('<effectiveTime value="20260520"/>', '<effectiveTime value="20260231"/>', "'20260231' is not a valid date"),
])
def test_bad_values_are_refused_naming_the_entry(county, old, new, message):
    text = (FILES / "hypertension-follow-up.xml").read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(CdaDocumentError) as caught:
        import_document(county, text.replace(old, new, 1).encode("utf-8"), what="gw.xml")
    assert message in caught.value.message


def test_a_follow_up_of_an_unknown_patient_is_a_422(county):
    text = (FILES / "hypertension-follow-up.xml").read_text(encoding="utf-8")
    text = text.replace("43053019580314025X", "110101199003077777").replace("43053010110100001", "43053010110100999")
    with pytest.raises(FhirError) as caught:
        import_document(county, text.encode("utf-8"), what="gw.xml")
    assert caught.value.status == 422 and "gw.xml: no patient" in caught.value.message


def test_a_visit_recorded_by_another_system_is_exported_and_its_document_skipped(county):
    """An Encounter the server got elsewhere (the profile's example, for 王建国) exports as a
    document; importing that document does not record the visit a second time."""
    server = county
    example = orjson.loads((Path(__file__).parents[4] / "profiles/local/examples/"
                            "county-follow-up-encounter-valid.json").read_bytes())
    example = {k: v for k, v in example.items() if k not in ("id", "meta")} | {"meta": example["meta"]}
    example["subject"] = {"reference": "Patient/pat-ph-1"}
    example["serviceProvider"] = {"reference": "Organization/org-vc-01-01"}
    example["participant"] = [{"individual": {"reference": "PractitionerRole/role-vc-01-01", "display": "刘春生"}}]
    example.pop("reasonReference", None)
    stored = server.resources.create(example, identity=SYSTEM).resource
    xml = export_follow_up(server, stored["id"])
    root = parse_document(xml)
    assert root.xpath("cda:author/cda:time/@value", namespaces=NS) == [stored["period"]["start"][:10].replace("-", "")]
    assert root.xpath("//cda:observation[cda:code/@code='DE06.00.108.00']/cda:value/@code", namespaces=NS) == ["1"]
    assert root.xpath("string(cda:author/cda:assignedAuthor/cda:representedOrganization/cda:name)",
                      namespaces=NS) == server.resources.read("Organization", "org-vc-01-01", identity=SYSTEM)["name"]
    result = import_document(server, xml, what="other.xml")
    assert result.status == "skipped" and "already recorded by another system" in result.notes[0]


def test_a_corrected_document_updates_the_visit(county, monkeypatch):
    """The correction is written within one millisecond (a frozen clock): lastUpdated keeps
    milliseconds, and a version stamped in the millisecond the import started is still the
    import's (it was once taken for an old one, and the correction called 'unchanged')."""
    import fhir_server.services.resources as resources

    server = county
    text = (FILES / "hypertension-follow-up.xml").read_text(encoding="utf-8")
    first = import_document(server, text.encode("utf-8"))
    frozen = datetime(2026, 5, 20, 8, 30, 0, 123456, tzinfo=UTC)

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen

    monkeypatch.setattr(resources, "datetime", Clock)
    corrected = text.replace('value="138" unit="mmHg"', 'value="148" unit="mmHg"')
    second = import_document(server, corrected.encode("utf-8"))
    assert (first.status, second.status) == ("created", "updated")
    assert second.resources[0] == first.resources[0]
    assert from_fhir(server, first.resources[0]).sbp == 148


def test_units_may_be_spelt_the_ucum_or_the_chinese_way(county):
    text = (FILES / "hypertension-follow-up.xml").read_text(encoding="utf-8")
    text = text.replace('value="138" unit="mmHg"', 'value="138" unit="mm[Hg]"') \
        .replace('value="72" unit="次/min"', 'value="72" unit="次/分"')
    result = import_document(county, text.encode("utf-8"))
    record = from_fhir(county, result.resources[0])
    assert (record.sbp, record.heart_rate) == (138, 72)


def test_an_urgent_blood_pressure_in_a_document_creates_the_urgent_referral(county):
    text = (FILES / "hypertension-follow-up.xml").read_text(encoding="utf-8")
    text = text.replace('value="138" unit="mmHg"', 'value="186" unit="mmHg"')
    result = import_document(county, text.encode("utf-8"))
    tasks = [r for r in result.resources if r.startswith("Task/")]
    assert len(tasks) == 1
    task = county.resources.read("Task", tasks[0].split("/")[1], identity=SYSTEM)
    assert task["for"] == {"reference": "Patient/pat-ph-1"}
    assert task["restriction"]["period"]["end"][:10] == "2026-06-03"  # two weeks after the visit


def test_a_gb18030_document_is_imported_with_its_chinese_text(county):
    text = (FILES / "hypertension-follow-up.xml").read_text(encoding="utf-8")
    data = text.replace('encoding="UTF-8"', 'encoding="GB18030"', 1).encode("gb18030")
    result = import_document(county, data)
    record = from_fhir(county, result.resources[0])
    assert record.name == "王建国" and record.medications == [Medication("硝苯地平控释片", "每日1次，每次30mg")]
