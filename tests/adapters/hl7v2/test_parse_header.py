"""read_header: the MSH of any message a sender may write, in any character set and framing."""

from __future__ import annotations

import pytest

from adapters.hl7v2.contract import MessageUnreadable
from adapters.hl7v2.translate import read_header

ORU_MSH = "MSH|^~\\&|LIS|县人民医院|FHIR|CHN|20260512101500||ORU^R01^ORU_R01|MSG0001|P|2.5|||AL|NE||{charset}"


def test_reads_every_field_the_pipeline_needs():
    header = read_header((ORU_MSH.format(charset="UNICODE UTF-8") + "\rPID|1||ZY001\r").encode("utf-8"))
    assert header.sending_application == "LIS"
    assert header.sending_facility == "县人民医院"
    assert header.receiving_application == "FHIR"
    assert header.receiving_facility == "CHN"
    assert header.message_type == "ORU^R01"
    assert header.control_id == "MSG0001"
    assert header.processing_id == "P"
    assert header.version == "2.5"
    assert header.accept_ack_type == "AL"
    assert header.application_ack_type == "NE"
    assert header.charset == "utf-8"
    assert header.charset_declared == "UNICODE UTF-8"
    assert header.field_separator == "|"
    assert header.encoding_characters == "^~\\&"
    assert header.sender == "LIS|县人民医院"


@pytest.mark.parametrize("declared", ["GB18030", "GB 18030-2000", "gbk", "GB2312", "CHINESE"])
def test_gb_family_declared_in_any_spelling_is_read_as_gb18030(declared):
    raw = (ORU_MSH.format(charset=declared) + "\rPID|1||ZY001||王^秀英\r").encode("gb18030")
    header = read_header(raw)
    assert header.charset == "gb18030"
    assert header.charset_declared == declared
    assert header.sending_facility == "县人民医院"


@pytest.mark.parametrize("declared", ["UTF-8", "utf8", "UNICODE UTF-8", "unicode_utf-8", "ISO IR192"])
def test_utf8_declared_in_any_spelling(declared):
    header = read_header((ORU_MSH.format(charset=declared) + "\r").encode("utf-8"))
    assert header.charset == "utf-8"


def test_undeclared_gbk_is_detected():
    raw = "MSH|^~\\&|XHIS|城关镇卫生院|FHIR|CHN|20260512||ADT^A04|C1|P|2.4\nPID|1||M1||王^秀英\n".encode("gbk")
    header = read_header(raw)
    assert header.charset == "gb18030"
    assert header.charset_declared is None
    assert header.sending_facility == "城关镇卫生院"


def test_wrong_declaration_falls_back_to_what_the_bytes_are():
    raw = (ORU_MSH.format(charset="UNICODE UTF-8") + "\rPID|1||ZY001||王^秀英\r").encode("gb18030")
    header = read_header(raw)
    assert header.charset == "gb18030"
    assert header.charset_declared == "UNICODE UTF-8"


def test_mllp_framing_bom_and_crlf_are_ignored():
    raw = b"\x0b\xef\xbb\xbf" + "MSH|^~\\&|LIS|县人民医院|FHIR|CHN|20260512||ORU^R01|C9|P|2.4\r\nPID|1\r\n".encode() + b"\x1c\r"
    header = read_header(raw)
    assert header.control_id == "C9"
    assert header.message_type == "ORU^R01"


def test_other_separators_are_taken_from_msh():
    header = read_header(b"MSH#$%\\*#LIS#LAB#FHIR#CHN#20260512##ORU$R01#C2#P#2.5\r")
    assert header.field_separator == "#"
    assert header.encoding_characters == "$%\\*"
    assert header.message_type == "ORU^R01"
    assert header.control_id == "C2"


def test_missing_encoding_characters_default():
    header = read_header(b"MSH||LIS|LAB|FHIR|CHN|20260512||ORU^R01|C3|P|2.4\r")
    assert header.encoding_characters == "^~\\&"
    assert header.message_type == "ORU^R01"


@pytest.mark.parametrize("raw", [b"", b"PID|1||X\r", b"hello", b"MSH|^~\\&|LIS\r"])
def test_no_readable_msh_raises(raw):
    with pytest.raises(MessageUnreadable):
        read_header(raw)


def test_utf8_bytes_declared_as_gb18030_are_read_as_utf8():
    raw = (ORU_MSH.format(charset="GB18030") + "\rPID|1||ZY001||王^秀英\r").encode("utf-8")
    header = read_header(raw)
    assert header.charset == "utf-8"
    assert header.charset_declared == "GB18030"
    assert header.sending_facility == "县人民医院"
