"""Splitting HL7 v2 files into messages: FHS/BHS batches, any segment end, GB 18030 bytes."""

from __future__ import annotations

import pytest

from adapters.hl7v2.batch_file import split_messages

ONE = "MSH|^~\\&|LIS|县人民医院|||20260512||ORU^R01|M1|P|2.5\rPID|1||ZY001||王^秀英\rOBX|1|NM|GLU||7.8\r"
TWO = "MSH|^~\\&|LIS|县人民医院|||20260512||ORU^R01|M2|P|2.5\rPID|1||ZY002||李^明\r"


@pytest.mark.parametrize("line_end", ["\r", "\n", "\r\n"])
def test_messages_are_split_on_msh_whatever_the_segment_end(line_end):
    text = (ONE + TWO).replace("\r", line_end)
    batch = split_messages(text.encode())
    assert batch.messages == [ONE.encode(), TWO.encode()]  # handed on with \r, as on the wire
    assert batch.stray_lines == 0


def test_fhs_bhs_envelopes_are_dropped_and_the_trailer_count_kept():
    text = ("FHS|^~\\&|LIS|县人民医院\nBHS|^~\\&|LIS|县人民医院\n" + ONE.replace("\r", "\n") +
            TWO.replace("\r", "\n") + "BTS|2\nFTS|1\n")
    batch = split_messages(text.encode())
    assert batch.messages == [ONE.encode(), TWO.encode()]
    assert batch.declared_counts == [2]


def test_gb18030_bytes_split_without_decoding():
    raw = (ONE + TWO).encode("gb18030")
    assert split_messages(raw).messages == [ONE.encode("gb18030"), TWO.encode("gb18030")]


def test_blank_lines_bom_mllp_bytes_and_stray_lines():
    data = b"\xef\xbb\xbfjunk before\r\n\r\n\x0b" + ONE.encode() + b"\x1c\r\n\n" + TWO.encode()
    batch = split_messages(data)
    assert batch.messages == [ONE.encode(), TWO.encode()]
    assert batch.stray_lines == 1
