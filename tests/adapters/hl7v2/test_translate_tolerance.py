"""Real-world tolerance (issue 5 item 5), unsupported types (AR) and bad messages (AE, no Bundle)."""

from __future__ import annotations

import pytest

from adapters.hl7v2.translate import translate
from fhir_server.auth.identity import SYSTEM
from fhir_server.operations.bundle import run_transaction

UCUM = "http://unitsofmeasure.org"


def message(lines: list[str], end: str = "\r", charset: str = "utf-8") -> bytes:
    return (end.join(lines) + end).encode(charset)


def lab(*segments: str, msh18: str = "", app: str = "LIS", facility: str = "县人民医院", version: str = "2.4") -> list[str]:
    return [f"MSH|^~\\&|{app}|{facility}|FHIR|CHN|20260512153000||ORU^R01|C1|P|{version}|||||{'|' + msh18 if msh18 else ''}",
            "PID|1||ZY0001^^^^MR~430530197201219824^^^^NNCHN||王^秀英||19720121|2",
            "OBR|1||F100|GLU^空腹血糖^L|||20260512083000",
            *segments]


def stored(server, translation) -> dict[str, list[dict]]:
    assert translation.status == "AA", translation.problems
    result: dict[str, list[dict]] = {}
    for entry in run_transaction(server, translation.bundle, identity=SYSTEM):
        result.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    return result


def test_gb18030_message_declared_in_msh18(server):
    raw = message(lab("OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|↑|||F", msh18="GB18030"), charset="gb18030")
    translation = translate(raw, server)
    assert translation.header.charset == "gb18030"
    observation = stored(server, translation)["Observation"][0]
    assert observation["code"]["text"] == "空腹血糖"


def test_undeclared_gbk_from_a_configured_sender_and_newline_segment_ends(server):
    lines = lab("OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|H|||F", app="THIS", facility="城关镇卫生院")
    translation = translate(message(lines, end="\n", charset="gbk"), server)
    assert translation.header.charset == "gb18030"
    result = stored(server, translation)
    assert result["Observation"][0]["code"]["text"] == "空腹血糖"
    assert result["Organization"][0]["identifier"][0]["value"] == "124305304940557646"


def test_crlf_segment_ends_and_blank_lines(server):
    lines = lab("", "OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|H|||F", "")
    result = stored(server, translate(message(lines, end="\r\n"), server))
    assert result["Observation"][0]["valueQuantity"]["value"] == 7.8


def test_raw_line_break_inside_a_note_is_kept_as_a_line_break(server):
    lines = lab("OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|H|||F", "NTE|1||第一行", "第二行")
    result = stored(server, translate(message(lines, end="\n"), server))
    assert result["Observation"][0]["note"] == [{"text": "第一行\n第二行"}]


@pytest.mark.parametrize("obx,expected", [
    ("OBX|1|NM|GLU^空腹血糖^L||7.8|^mmol/L|3.9-6.1", "mmol/L"),  # unit in the text component
    ("OBX|1|NM|GLU^空腹血糖^L||7.8 mmol/L||3.9-6.1", "mmol/L"),  # unit after the number
    ("OBX|1|ST|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1", "mmol/L"),  # a number sent as ST
    ("OBX|1||GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1", "mmol/L"),  # no value type at all
])
def test_units_in_the_wrong_place_and_numbers_as_text(server, obx, expected):
    result = stored(server, translate(message(lab(obx + "||||F")), server))
    quantity = result["Observation"][0]["valueQuantity"]
    assert quantity == {"value": 7.8, "unit": expected, "system": UCUM, "code": "mmol/L"}


@pytest.mark.parametrize("flag,code", [("↑", "H"), ("↓", "L"), ("H", "H"), ("1", "H"), ("2", "L"), ("偏高", "H"),
                                       ("↑↑", "HH"), ("N", "N")])
def test_abnormal_flags_as_letters_symbols_digits(server, flag, code):
    result = stored(server, translate(message(lab(f"OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|{flag}|||F")), server))
    assert result["Observation"][0]["interpretation"][0]["coding"][0]["code"] == code


def test_unknown_flag_is_kept_as_text_with_a_warning(server):
    translation = translate(message(lab("OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|??|||F")), server)
    assert translation.status == "AA"
    assert any(p.segment == "OBX" and p.field == 8 and p.code == "103" for p in translation.problems)
    assert stored(server, translation)["Observation"][0]["interpretation"] == [{"text": "??"}]


@pytest.mark.parametrize("birth", ["1972-01-21", "1972/01/21", "1972年01月21日", "19720121"])
def test_dates_in_non_hl7_formats(server, birth):
    raw = message(["MSH|^~\\&|HIS|县人民医院|FHIR|CHN|20260512||ADT^A04|A1|P|2.4",
                   f"PID|1||M1^^^^MR||王^秀英||{birth}|2"])
    assert stored(server, translate(raw, server))["Patient"][0]["birthDate"] == "1972-01-21"


def test_observation_time_in_a_non_hl7_format_gets_china_offset(server):
    result = stored(server, translate(message(lab(
        "OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1||||F|||2026-05-12 08:30:00")), server))
    assert result["Observation"][0]["effectiveDateTime"] == "2026-05-12T08:30:00+08:00"


@pytest.mark.parametrize("sex,gender", [("1", "male"), ("2", "female"), ("0", "unknown"), ("9", "unknown"),
                                        ("M", "male"), ("女", "female")])
def test_sex_as_gb_t_2261_1_digits(server, sex, gender):
    raw = message(["MSH|^~\\&|HIS|县人民医院|FHIR|CHN|20260512||ADT^A04|A1|P|2.4",
                   f"PID|1||M1^^^^MR||王^秀英||19720121|{sex}"])
    assert stored(server, translate(raw, server))["Patient"][0]["gender"] == gender


def test_exactly_repeated_obx_is_dropped_with_a_warning(server):
    obx = "OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|H|||F"
    translation = translate(message(lab(obx, obx)), server)
    assert any(p.code == "100" and p.severity == "W" and p.sequence == 2 for p in translation.problems)
    assert len(stored(server, translation)["Observation"]) == 1


@pytest.mark.parametrize("message_type,code", [("ORM^O01", "200"), ("ADT^A03", "201"), ("QRY^A19", "200")])
def test_unsupported_types_are_refused(server, message_type, code):
    raw = f"MSH|^~\\&|HIS|县人民医院|FHIR|CHN|20260512||{message_type}|Q1|P|2.4\rPID|1||M1\r".encode()
    translation = translate(raw, server)
    assert translation.status == "AR"
    assert translation.bundle is None
    assert [(p.segment, p.field, p.code, p.severity) for p in translation.problems] == [("MSH", 9, code, "E")]


@pytest.mark.parametrize("obx,field,code", [
    ("OBX|1|NM|GLU^空腹血糖^L||阳性|mmol/L||||F", 5, "102"),  # NM that is not a number
    ("OBX|1|ED|GLU^空腹血糖^L||x|||||F", 2, "102"),  # a value type we cannot map
    ("OBX|1|NM|||7.8|mmol/L||||F", 3, "101"),  # no observation identifier
])
def test_what_cannot_be_understood_is_ae_naming_segment_and_field(server, obx, field, code):
    translation = translate(message(lab(obx)), server)
    assert translation.status == "AE"
    assert translation.bundle is None
    error = next(p for p in translation.problems if p.severity == "E")
    assert (error.segment, error.sequence, error.field, error.code) == ("OBX", 1, field, code)


def test_results_without_order_number_are_ae(server):
    raw = message(["MSH|^~\\&|LIS|县人民医院|FHIR|CHN|20260512||ORU^R01|C1|P|2.4",
                   "PID|1||M1^^^^MR||王^秀英||19720121|2", "OBR|1|||GLU^空腹血糖^L",
                   "OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L||||F"])
    translation = translate(raw, server)
    assert translation.status == "AE"
    assert next(p for p in translation.problems if p.severity == "E").field == 3


def test_patient_without_identifier_is_ae(server):
    raw = message(["MSH|^~\\&|HIS|县人民医院|FHIR|CHN|20260512||ADT^A04|A1|P|2.4", "PID|1||||王^秀英||19720121|2"])
    translation = translate(raw, server)
    assert translation.status == "AE"
    assert [(p.segment, p.field, p.code) for p in translation.problems if p.severity == "E"] == [("PID", 3, "101")]


def test_empty_segments_are_ignored_with_a_warning(server):
    lines = lab("NTE|1|", "OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|H|||F", "OBX|", "NTE")
    translation = translate(message(lines), server)
    assert sum(1 for p in translation.problems if p.text.endswith("segment is empty; ignored")) == 3
    assert len(stored(server, translation)["Observation"]) == 1


def test_v24_specimen_source_in_obr15(server):
    lines = ["MSH|^~\\&|LIS|县人民医院|FHIR|CHN|20260512153000||ORU^R01|C1|P|2.4",
             "PID|1||ZY0001^^^^MR||王^秀英||19720121|2",
             "OBR|1||F200|GLU^空腹血糖^L|||20260512083000|||||||20260512090000|SER&血清",
             "OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|H|||F"]
    result = stored(server, translate(message(lines), server))
    [specimen] = result["Specimen"]
    assert specimen["type"]["coding"][0] == {"system": "http://terminology.hl7.org/CodeSystem/v2-0070",
                                             "code": "SER", "display": "血清"}
    assert specimen["collection"]["collectedDateTime"] == "2026-05-12T08:30:00+08:00"
    assert specimen["receivedTime"] == "2026-05-12T09:00:00+08:00"
    assert result["Observation"][0]["specimen"] == {"reference": f"Specimen/{specimen['id']}"}


def test_unit_unknown_to_ucum_is_kept_and_the_result_still_stored(server):
    result = stored(server, translate(message(lab("OBX|1|NM|GLU^空腹血糖^L||5|倍稀释||||F")), server))
    observation = result["Observation"][0]
    assert observation["valueQuantity"] == {"value": 5, "unit": "倍稀释"}
    assert "meta" not in observation or "county-lab-result" not in str(observation["meta"].get("profile"))


def test_performing_lab_from_obx23(server):
    obx = "OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|H|||F||||||||||||城关镇卫生院检验室^^^^^^^^^124305304940557646-02"
    result = stored(server, translate(message(lab(obx)), server))
    labs = {o["identifier"][0]["value"]: o["id"] for o in result["Organization"]}
    assert result["Observation"][0]["performer"][0] == {"reference": f"Organization/{labs['124305304940557646-02']}"}


def test_run_on_segments_of_a_configured_sender_are_split(server):
    raw = ("MSH|^~\\&|OLDLIS|乡卫生院|FHIR|CHN|20260512||ORU^R01|C1|P|2.4"
           "PID|1||ZY0001^^^^MR||王^秀英||19720121|2"
           "OBR|1||F300|GLU^空腹血糖^L|||20260512083000"
           "OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|H|||F").encode()
    translation = translate(raw, server)
    assert any(p.segment == "MSH" and "run_on_segments" in p.text for p in translation.problems)
    result = stored(server, translation)
    assert result["Observation"][0]["valueQuantity"]["value"] == 7.8
