"""Reading files and cells: encodings, formats, code digits and words, dates, the column map."""

from __future__ import annotations

import io
from datetime import date, datetime

import pytest
from openpyxl import Workbook

from adapters.public_health.columns import column_map, normalise_header
from adapters.public_health.follow_up_record import RecordError, record_fields
from adapters.public_health.form_codes import code_tables
from adapters.public_health.reading import Row, decode_text, detect_format, parse_date, read_rows, to_record
from tests.adapters.public_health.conftest import FILES


@pytest.mark.parametrize(("value", "code"), [
    ("1", "1"), ("门诊", "1"), ("1 门诊", "1"), ("1.门诊", "1"), ("家访", "2"), ("电话", "3"), (3.0, "3"),
    ("Phone call", "3"),
])
def test_visit_mode_digits_words_and_both(value, code):
    assert code_tables()["visit_mode"].code(value) == code


def test_an_answer_that_is_not_on_the_form_is_refused():
    with pytest.raises(RecordError, match="'5' is not an answer of visit_classification"):
        code_tables()["visit_classification"].code("5")
    with pytest.raises(RecordError):
        code_tables()["visit_mode"].code("2 门诊")  # digit and word disagree


def test_several_symptoms_in_one_cell():
    table = code_tables()["hypertension_symptom"]
    assert table.codes("2,4") == (["2", "4"], [])
    assert table.codes("头痛头晕、眼花耳鸣") == (["2", "4"], [])
    assert table.codes("头晕 牙痛") == (["2"], ["牙痛"])


def test_unknown_symptom_words_go_to_other():
    columns = column_map("hypertension")
    record = to_record(Row(2, {"身份证号": "43053019580314025X", "随访日期": "2025-01-02", "症状": "头痛头晕，牙痛"}),
                       columns)
    assert record.symptoms == ["2", "10"] and record.symptoms_other == "牙痛"


@pytest.mark.parametrize(("value", "day"), [
    ("2025-09-18", date(2025, 9, 18)), ("2025/9/18", date(2025, 9, 18)), ("2025.09.18", date(2025, 9, 18)),
    ("2025年9月18日", date(2025, 9, 18)), ("20250918", date(2025, 9, 18)),
    ("2025-09-18 10:30:00", date(2025, 9, 18)), (datetime(2025, 9, 18, 10), date(2025, 9, 18)),
    (45918, date(2025, 9, 18)),  # an Excel serial day
])
def test_dates(value, day):
    assert parse_date(value) == day


@pytest.mark.parametrize("value", ["2025-13-01", "2025-02-30", "18/09/2025", "明天"])
def test_bad_dates(value):
    with pytest.raises(RecordError):
        parse_date(value)


def test_encoding_is_detected():
    text = "姓名,随访日期\n王建国,2025-01-01\n"
    assert decode_text(text.encode("gb18030")) == (text, "gb18030")
    assert decode_text(text.encode("utf-8")) == (text, "utf-8")
    assert decode_text("\ufeff".encode() + text.encode("utf-8")) == (text, "utf-8")


def test_format_from_name_or_content():
    assert detect_format("a.xlsx", b"") == "xlsx"
    assert detect_format(None, b"PK\x03\x04...") == "xlsx"
    assert detect_format(None, b'  [{"a": 1}]') == "json"
    assert detect_format("upload", "姓名,随访日期".encode()) == "csv"


def test_csv_lines_count_quoted_newlines_and_skip_blank_rows():
    data = '姓名,随访日期,辅助检查\n王建国,2025-01-01,"心电图：\n正常"\n,,\n张德明,2025-01-02,\n'.encode()
    rows = list(read_rows(data, "csv"))
    assert [(r.line, r.cells["姓名"]) for r in rows] == [(2, "王建国"), (5, "张德明")]
    assert rows[0].cells["辅助检查"] == "心电图：\n正常"


def test_headers_are_normalised():
    assert normalise_header(" 体重（kg） ") == "体重"
    assert normalise_header("Resident ID") == "resident id"
    columns = column_map("diabetes")
    assert columns.column("空腹血糖(mmol/L)").field == "fasting_glucose"
    assert columns.column("药物名称3").field == "medication_3_name"
    assert columns.column("摄盐情况") is None  # not on the diabetes form


def test_every_record_field_has_a_column():
    mapped = {c.field for kind in ("hypertension", "diabetes") for c in column_map(kind).columns}
    missing = [f for f in record_fields() if f not in mapped and f != "medications"]
    assert missing == []


def test_a_site_column_map_adds_headers(tmp_path):
    extra = tmp_path / "site.csv"
    extra.write_text("header,field\n档案号,health_record_number\n高压,sbp\n低压,dbp\n", encoding="utf-8")
    columns = column_map("hypertension", extra)
    record = to_record(Row(2, {"档案号": "43053010110100001", "随访日期": "2025-01-02", "高压": "150", "低压": "95"}),
                       columns)
    assert (record.health_record_number, record.sbp, record.dbp) == ("43053010110100001", 150, 95)


def test_numbers_with_units_and_blood_pressure_in_one_cell():
    columns = column_map("hypertension")
    record = to_record(Row(2, {"身份证号": "43053019580314025X", "随访日期": "2025-01-02", "血压": "150/95",
                               "心率": "72次/分", "体重": "65.5kg", "日饮酒量": "1.5"}), columns)
    assert (record.sbp, record.dbp, record.heart_rate, record.weight_kg, record.drinking_per_day) == (
        150, 95, 72, 65.5, 1.5)


def test_every_bad_cell_is_named():
    columns = column_map("hypertension")
    with pytest.raises(RecordError) as caught:
        to_record(Row(3, {"身份证号": "43053019580314025X", "随访日期": "2025-01-02", "心率": "快",
                          "随访方式": "6", "收缩压": "-5"}), columns)
    message = str(caught.value)
    assert "心率: '快' is not a number" in message
    assert "随访方式: '6' is not an answer of visit_mode" in message
    assert "收缩压: '-5' is negative" in message


def test_xlsx_and_json_readers():
    rows = list(read_rows((FILES / "hypertension-corrected.xlsx").read_bytes(), "xlsx", "hypertension"))
    assert [r.line for r in rows] == [2, 3]
    assert rows[0].cells["随访日期"] == datetime(2025, 3, 10)
    rows = list(read_rows((FILES / "diabetes.json").read_bytes(), "json", "diabetes"))
    assert [r.line for r in rows] == [1, 2]
    book = Workbook()
    book.active.append(["a"])
    buffer = io.BytesIO()
    book.save(buffer)
    assert list(read_rows(buffer.getvalue(), "xlsx")) == []
    with pytest.raises(RecordError, match="not a readable .xlsx"):
        list(read_rows(b"PK\x03\x04 not a zip", "xlsx"))
    with pytest.raises(RecordError, match="not valid JSON"):
        list(read_rows(b"[{", "json"))
