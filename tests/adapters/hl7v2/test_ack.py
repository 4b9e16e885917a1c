"""ACKs: MSA and ERR fields, the sender's version and character set, original and enhanced mode."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from adapters.hl7v2.ack import acknowledgement, build_ack, escape, refusal_header
from adapters.hl7v2.contract import Header, Problem

BEIJING = timezone(timedelta(hours=8))
NOW = datetime(2026, 5, 1, 9, 30, 5, tzinfo=BEIJING)


def header(**changes) -> Header:
    values = dict(
        sending_application="LIS", sending_facility="县医院", receiving_application="FHIR",
        receiving_facility="平台", message_type="ORU^R01^ORU_R01", control_id="MSG0001", processing_id="P",
        version="2.5", charset="utf-8", charset_declared=None, accept_ack_type=None, application_ack_type=None,
    )
    values.update(changes)
    return Header(**values)


def segments(ack: bytes, codec: str = "utf-8") -> dict[str, list[list[str]]]:
    text = ack.decode(codec)
    assert text.endswith("\r") and "\n" not in text
    found: dict[str, list[list[str]]] = {}
    for line in text.rstrip("\r").split("\r"):
        fields = line.split("|")
        found.setdefault(fields[0], []).append(fields)
    return found


VALUE_ERROR = Problem("OBX", 2, 5, 1, "102", "E", "OBX-5 '阳性|弱' is not a number")
UNKNOWN_CODE = Problem("OBX", 3, 3, None, "103", "W", "Local code GLU-X is not mapped to LOINC")


def test_an_accepted_message_gets_aa_addressed_back_to_its_sender():
    ack = segments(build_ack(header(), "AA", now=NOW, control_id="ACK1"))
    [msh] = ack["MSH"]
    assert msh[1] == "^~\\&"
    assert msh[2:6] == ["FHIR", "平台", "LIS", "县医院"]  # MSH-3..6: from us, to the sender
    assert msh[6] == "20260501093005+0800"
    assert msh[8] == "ACK^R01^ACK"
    assert msh[9] == "ACK1"
    assert msh[10:12] == ["P", "2.5"]
    assert len(msh) == 12  # no MSH-15/16/18 in original mode without a declared charset
    assert ack["MSA"] == [["MSA", "AA", "MSG0001"]]
    assert "ERR" not in ack


def test_each_problem_becomes_one_err_with_location_code_severity_and_message():
    ack = segments(build_ack(header(), "AE", [VALUE_ERROR, UNKNOWN_CODE], now=NOW))
    assert ack["MSA"] == [["MSA", "AE", "MSG0001"]]
    first, second = ack["ERR"]
    assert first[2] == "OBX^2^5^^1"  # ERR-2: segment ^ sequence ^ field ^ repetition ^ component
    assert first[3] == "102^Data type error^HL70357"  # ERR-3, table 0357
    assert first[4] == "E"  # ERR-4 severity
    assert first[8] == "OBX-5 '阳性\\F\\弱' is not a number"  # ERR-8, escaped
    assert second[2] == "OBX^3^3"
    assert second[3] == "103^Table value not found^HL70357"
    assert second[4] == "W"


def test_a_problem_without_a_location_leaves_err_2_empty():
    problem = Problem("", 0, None, None, "207", "E", "Internal error (reference abc)")
    [err] = segments(build_ack(header(), "AE", [problem]))["ERR"]
    assert err[2] == ""
    assert err[3] == "207^Application internal error^HL70357"


def test_before_2_5_the_ack_has_one_err_whose_err_1_repeats_and_msa_3_has_the_text():
    ack = segments(build_ack(header(version="2.4"), "AE", [VALUE_ERROR, UNKNOWN_CODE]))
    assert ack["MSH"][0][8] == "ACK^R01^ACK"
    assert ack["MSH"][0][11] == "2.4"
    assert ack["MSA"] == [["MSA", "AE", "MSG0001", "OBX-5 '阳性\\F\\弱' is not a number"]]
    [err] = ack["ERR"]
    assert err[1].split("~") == ["OBX^2^5^102&Data type error&HL70357",
                                 "OBX^3^3^103&Table value not found&HL70357"]


@pytest.mark.parametrize(("version", "message_type"), [
    ("2.3.1", "ACK^R01"), ("2.3", "ACK^R01"), ("2.2", "ACK"), ("2.6", "ACK^R01^ACK"),
])
def test_the_ack_message_type_follows_the_version(version, message_type):
    ack = segments(build_ack(header(version=version), "AA"))
    assert ack["MSH"][0][8] == message_type
    assert ack["MSH"][0][11] == version


def test_the_ack_is_encoded_in_the_charset_the_message_came_in():
    h = header(charset="gb18030", charset_declared="GB 18030-2000")
    raw = build_ack(h, "AE", [Problem("PID", 1, 8, None, "103", "E", "性别代码“9”未知")])
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    ack = segments(raw, "gb18030")
    assert ack["MSH"][0][17] == "GB 18030-2000"  # MSH-18 echoed
    assert ack["MSH"][0][2:6] == ["FHIR", "平台", "LIS", "县医院"]
    assert ack["ERR"][0][8] == "性别代码“9”未知"


def test_utf8_declared_in_any_spelling_is_echoed_as_sent():
    ack = segments(build_ack(header(charset_declared="UNICODE UTF-8"), "AA"))
    assert ack["MSH"][0][17] == "UNICODE UTF-8"
    assert ack["MSH"][0][14:16] == ["", ""]


def test_escape_covers_every_delimiter():
    assert escape("a|b^c~d\\e&f\rg") == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\.br\\g"
    assert escape("血糖 7.8") == "血糖 7.8"


# -- acknowledgement modes ---------------------------------------------------------------------

@pytest.mark.parametrize("outcome", ["AA", "AE", "AR"])
def test_original_mode_answers_the_outcome(outcome):
    assert acknowledgement(header(), outcome).code == outcome


@pytest.mark.parametrize(("accept", "application", "outcome", "expected"), [
    ("AL", "AL", "AE", "AE"),  # an application ACK is asked for: it is sent, synchronously
    ("NE", "AL", "AA", "AA"),
    ("NE", "ER", "AE", "AE"),
    ("NE", "ER", "AA", None),  # application ACK only on error, commit ACK never
    ("AL", "ER", "AA", "CA"),  # no application ACK wanted: the commit ACK
    ("AL", "NE", "AE", "CA"),  # stored and its outcome recorded: commit accept
    ("AL", "NE", "AR", "CR"),  # refused: commit reject
    ("ER", "NE", "AA", None),
    ("ER", "NE", "AR", "CR"),
    ("SU", "NE", "AA", "CA"),
    ("NE", "NE", "AA", None),
    ("", "SU", "AE", "CA"),  # MSH-15 empty in enhanced mode: a commit ACK
    ("NE", "SU", "AA", "AA"),
])
def test_enhanced_mode_follows_msh_15_and_16(accept, application, outcome, expected):
    h = header(accept_ack_type=accept, application_ack_type=application)
    assert acknowledgement(h, outcome).code == expected


def test_enhanced_mode_commit_error_when_the_message_could_not_be_stored():
    h = header(accept_ack_type="AL", application_ack_type="NE")
    assert acknowledgement(h, "AE", stored=False).code == "CE"
    assert acknowledgement(header(), "AE", stored=False).code == "AE"


def test_an_enhanced_mode_ack_asks_for_no_acknowledgement_itself():
    h = header(accept_ack_type="AL", application_ack_type="NE")
    msh = segments(build_ack(h, "CA"))["MSH"][0]
    assert msh[14:16] == ["NE", "NE"]
    assert segments(build_ack(h, "CA"))["MSA"][0][1] == "CA"


def test_a_nak_for_unreadable_bytes_uses_what_can_be_guessed():
    h = refusal_header(b"garbage\rMSH|^~\\&|HIS^1.2.3^ISO|ShiMen|||2026||ADT^A01|CTRL-9|P|2.4")
    assert (h.sending_application, h.sending_facility, h.control_id) == ("HIS", "ShiMen", "CTRL-9")
    ack = segments(build_ack(h, "AR"))
    assert ack["MSA"] == [["MSA", "AR", "CTRL-9"]]
    assert refusal_header(b"\x00\x01 nothing").control_id == ""


@pytest.mark.parametrize("version", ["2.4", "2.5", "2.5.1", "2.6", "2.7"])
def test_hl7apy_reads_the_ack_as_a_valid_ack_message(version):
    hl7apy_parser = pytest.importorskip("hl7apy.parser")
    from hl7apy.consts import VALIDATION_LEVEL

    h = header(version=version, charset_declared="UNICODE UTF-8", accept_ack_type="AL", application_ack_type="AL")
    text = build_ack(h, "AE", [VALUE_ERROR, UNKNOWN_CODE]).decode()
    message = hl7apy_parser.parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    message.validate()
    assert message.msa.msa_1.value == "AE"
    assert message.msa.msa_2.value == "MSG0001"
    if version >= "2.5":
        assert message.err[0].err_3.err_3_1.value == "102"
        assert message.err[1].err_4.value == "W"
