"""The two parsers (hl7 package: the hot path; hl7apy: structure-checked) read messages alike."""

from __future__ import annotations

import pytest

from adapters.hl7v2.decoding import decode
from adapters.hl7v2.parsing import PARSERS, parser_named

ORU = ("MSH|^~\\&|LIS|县人民医院|FHIR|CHN|20260512153000||ORU^R01^ORU_R01|MSG0001|P|2.5|||AL|NE||UNICODE UTF-8\r"
       "PID|1||ZY001^^^XRMYY^MR~430530197201219824^^^^NNCHN||王^秀英||19720121|2\r"
       "OBR|1|PL1|FL1|BIOCHEM^生化检验^L\r"
       "OBX|1|SN|GLU^空腹血糖^L||>^16.7|mmol/L|3.9-6.1|↑|||F\r"
       "NTE|1||第一行\\.br\\第二行 \\F\\ \\S\\ \\T\\ \\R\\ \\E\\\r"
       "SPM|1|SP001&LIS^SP001F&LIS||SER^血清^HL70487\r").encode()


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_each_parser_gives_fields_components_repetitions(name):
    message = parser_named(name).parse(decode(ORU))
    assert [s.id for s in message.segments] == ["MSH", "PID", "OBR", "OBX", "NTE", "SPM"]
    msh, pid, _, obx, nte, spm = message.segments
    assert msh.get(9, 1) == "ORU" and msh.get(9, 2) == "R01"
    assert msh.get(10) == "MSG0001"
    assert pid.get(3, 1, repetition=2) == "430530197201219824"
    assert pid.get(3, 5, repetition=2) == "NNCHN"
    assert pid.get(3, 4, repetition=1) == "XRMYY"
    assert len(pid.repetitions(3)) == 2
    assert pid.get(5, 1) == "王" and pid.get(5, 2) == "秀英"
    assert obx.get(5, 1) == ">" and obx.get(5, 2) == "16.7"
    assert obx.get(8) == "↑"
    assert nte.get(3) == "第一行\n第二行 | ^ & ~ \\"
    assert spm.get(2, 2, 1) == "SP001F" and spm.get(2, 2, 2) == "LIS"
    assert obx.sequence == 1 and pid.get(99) == ""


@pytest.mark.parametrize("other", ["hl7", "hl7apy"])
def test_parsers_agree_field_by_field(other):
    fast, checked = (parser_named(n).parse(decode(ORU)) for n in ("split", other))
    for a, b in zip(fast.segments, checked.segments, strict=True):
        width = max(len(a.fields), len(b.fields))
        for n in range(3 if a.id == "MSH" else 1, width):
            assert a.repetitions(n) == b.repetitions(n), (a.id, n)


def test_translation_is_the_same_with_each_parser():
    """The mapping sees one V2Message whichever parser built it (uuids aside)."""
    import re

    from adapters.hl7v2.translate import translate

    raw = ORU.replace(b"NTE|1||", b"OBX|1|NM|GLU^\xe7\xa9\xba\xe8\x85\xb9\xe8\xa1\x80\xe7\xb3\x96^L||7.8|mmol/L|3.9-6.1|H|||F\rNTE|1||")
    bundles = {}
    for name in PARSERS:
        translation = translate(raw, None, parser=name)
        assert translation.status == "AA", translation.problems
        bundles[name] = re.sub(r"urn:uuid:[0-9a-f-]+", "urn:uuid:x", repr(translation.bundle))
    assert bundles["split"] == bundles["hl7"] == bundles["hl7apy"]


def test_hl7apy_structure_check_reports_table_values_and_structure_errors():
    from adapters.hl7v2.structure import structure_problems

    problems = structure_problems(ORU)
    flag = next(p for p in problems if p.segment == "OBX" and p.field == 8)
    assert (flag.code, flag.severity) == ("103", "W")  # "↑" is not in HL7 table 0078
    assert next(p for p in problems if p.segment == "PID" and p.field == 3).component == 5  # NNCHN, table 0203
    assert not any(p.severity == "E" for p in problems)
    broken = ORU.replace(b"OBR|1|PL1|FL1|BIOCHEM^", b"OBR|1|PL1|FL1|BIOCHEM^^^^^^^^^^^^^^^^^^^^^^^^^^^")
    assert any(p.severity == "E" for p in structure_problems(broken))
