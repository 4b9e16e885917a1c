"""Datatype and value maps, segment by segment (no store)."""

from __future__ import annotations

import pytest

from adapters.hl7v2 import translate  # noqa: F401 - registers every datatype map
from adapters.hl7v2.context import MappingContext
from adapters.hl7v2.contract import Header
from adapters.hl7v2.datatypes import DATATYPE_MAPS, to_datetime, to_instant
from adapters.hl7v2.parsing import Segment

UCUM = "http://unitsofmeasure.org"


def context(app: str = "LIS", facility: str = "县人民医院") -> MappingContext:
    return MappingContext(Header(app, facility, "F", "C", "ORU^R01", "1", "P", "2.5", "utf-8", None, None, None))


def segment(segment_id: str, *fields: str) -> Segment:
    parsed = [[[[segment_id]]]]
    for text in fields:
        parsed.append([[comp.split("&") for comp in rep.split("^")] for rep in text.split("~")])
    return Segment(segment_id, parsed)


def obx(value_type: str, value: str, unit: str = "", ranges: str = "") -> Segment:
    return segment("OBX", "1", value_type, "GLU^空腹血糖^L", "", value, unit, ranges)


@pytest.mark.parametrize("text,expected", [
    ("20260512", "2026-05-12"),
    ("202605", "2026-05"),
    ("20260512083000", "2026-05-12T08:30:00+08:00"),
    ("202605120830", "2026-05-12T08:30:00+08:00"),
    ("20260512083000.123+0000", "2026-05-12T08:30:00+00:00"),
    ("2026-05-12 08:30:00", "2026-05-12T08:30:00+08:00"),
    ("2026/05/12 08:30", "2026-05-12T08:30:00+08:00"),
    ("2026年05月12日", "2026-05-12"),
    ("20261345", None),
    ("昨天", None),
])
def test_date_times(text, expected):
    assert to_datetime(text, context()) == expected


def test_instant_of_a_date_is_its_midnight():
    assert to_instant("20260512", context()) == "2026-05-12T00:00:00+08:00"


@pytest.mark.parametrize("value_type,value,unit,expected", [
    ("NM", "7.8", "mmol/L", {"valueQuantity": {"value": 7.8, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}}),
    ("NM", "88", "μmol/L", {"valueQuantity": {"value": 88, "unit": "μmol/L", "system": UCUM, "code": "umol/L"}}),
    ("NM", "5", "倍稀释", {"valueQuantity": {"value": 5, "unit": "倍稀释"}}),  # no UCUM: the local unit kept
    ("SN", ">^16.7", "mmol/L", {"valueQuantity": {"value": 16.7, "comparator": ">", "unit": "mmol/L",
                                                  "system": UCUM, "code": "mmol/L"}}),
    ("SN", "<=^0.1", "", {"valueQuantity": {"value": 0.1, "comparator": "<="}}),
    ("SN", "^3.9^-^6.1", "mmol/L", {"valueRange": {
        "low": {"value": 3.9, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
        "high": {"value": 6.1, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}}}),
    ("SN", "^1^:^128", "", {"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 128}}}),
    ("SN", ">16.7", "mmol/L", {"valueQuantity": {"value": 16.7, "comparator": ">", "unit": "mmol/L",
                                                 "system": UCUM, "code": "mmol/L"}}),
    ("ST", "阴性", "", {"valueString": "阴性"}),
    ("ST", "<0.1", "mmol/L", {"valueQuantity": {"value": 0.1, "comparator": "<", "unit": "mmol/L",
                                                "system": UCUM, "code": "mmol/L"}}),
    ("TX", "未见异常", "", {"valueString": "未见异常"}),
    ("FT", "第一行~第二行", "", {"valueString": "第一行\n第二行"}),
    ("CWE", "POS^阳性^L", "", {"valueCodeableConcept": {"coding": [{
        "system": "https://county-fhir.example.org/fhir/sid/hl7v2/12430530491141704B-30/result-code",
        "code": "POS", "display": "阳性"}], "text": "阳性"}}),
    ("TS", "20260512", "", {"valueDateTime": "2026-05-12"}),
])
def test_observation_values(value_type, value, unit, expected):
    assert DATATYPE_MAPS["ObservationValue"](obx(value_type, value, unit), 5, context(), "") == expected


@pytest.mark.parametrize("text,expected", [
    ("3.9-6.1", {"low": 3.9, "high": 6.1}),
    ("3.9～6.1", {"low": 3.9, "high": 6.1}),
    ("3.9--6.1", {"low": 3.9, "high": 6.1}),
    ("<5.2", {"high": 5.2}),
    ("≥1.04", {"low": 1.04}),
])
def test_reference_ranges(text, expected):
    [found] = DATATYPE_MAPS["ReferenceRange"](obx("NM", "1", "mmol/L", text), 7, context(), "")
    assert {k: v["value"] for k, v in found.items() if k in ("low", "high")} == expected
    assert all(found[k]["code"] == "mmol/L" for k in expected)


def test_reference_range_text_is_kept():
    assert DATATYPE_MAPS["ReferenceRange"](obx("ST", "阴性", "", "阴性"), 7, context(), "") == [{"text": "阴性"}]


def test_loinc_alternate_triplet_is_used_without_the_concept_map():
    from adapters.hl7v2.laboratory_values import lab_code

    concept, has_loinc = lab_code(segment("OBX", "1", "NM", "GLU^空腹血糖^L^14771-0^Fasting glucose^LN"), 3, context())
    assert has_loinc and concept["coding"][0] == {"system": "http://loinc.org", "code": "14771-0",
                                                  "display": "Fasting glucose"}


def test_sender_specific_flag_digits(tmp_path):
    """A sender whose LIS writes 1 for low gets its own rows; others keep the default."""
    import shutil

    from adapters.hl7v2.mapping_tables import MAPPINGS_DIR, MappingTables

    copy = tmp_path / "hl7v2"
    shutil.copytree(MAPPINGS_DIR, copy)
    with (copy / "vocabulary" / "abnormal-flags.csv").open("a", encoding="utf-8") as f:
        f.write("OLDLIS|乡卫生院,1,L,Low,\n")
    ctx = context("OLDLIS", "乡卫生院")
    ctx.tables = MappingTables(copy)
    flagged = segment("OBX", "1", "NM", "GLU", "", "3.0", "mmol/L", "", "1")
    assert DATATYPE_MAPS["AbnormalFlags"](flagged, 8, ctx, "")[0]["coding"][0]["code"] == "L"
    assert DATATYPE_MAPS["AbnormalFlags"](flagged, 8, context(), "")[0]["coding"][0]["code"] == "H"


def test_telecom_and_address():
    pid = segment("PID", "1", "", "", "", "", "", "", "", "", "", "上垅村6组^^邵阳市^湖南省^422000^CN^H^^青山县",
                  "", "13800001111^PRN^CP~^NET^Internet^wang@example.cn")
    assert DATATYPE_MAPS["XTN[ContactPoint]"](pid, 13, context(), "") == [
        {"system": "phone", "value": "13800001111", "use": "mobile"},
        {"system": "email", "value": "wang@example.cn"}]
    [address] = DATATYPE_MAPS["XAD[Address]"](pid, 11, context(), "")
    assert address["text"] == "湖南省邵阳市青山县上垅村6组"
    assert address["postalCode"] == "422000"
