"""The mapping tables under mappings/hl7v2 are complete and readable by the code."""

from __future__ import annotations

from adapters.hl7v2 import translate  # noqa: F401 - registers every datatype map
from adapters.hl7v2.mapping_tables import MappingTables, tables
from adapters.hl7v2.segment_map import check_segment_maps


def test_every_segment_map_row_names_a_known_map_field_and_vocabulary():
    assert check_segment_maps(tables()) == []


def test_every_message_handler_exists():
    from adapters.hl7v2.translate import HANDLERS

    assert {row["handler"] for row in tables().messages.values()} <= set(HANDLERS)


def test_sender_settings_most_specific_row_wins():
    t = tables()
    assert t.setting("THIS", "城关镇卫生院", "charset") == "gb18030"
    assert t.setting("OTHER", "somewhere", "charset") == ""
    assert t.setting("OTHER", "somewhere", "timezone") == "+08:00"
    assert t.setting("LIS", "县人民医院", "institution_code") == "12430530491141704B-30"


def test_sender_rows_override_default_vocabulary(tmp_path):
    import shutil

    from adapters.hl7v2.mapping_tables import MAPPINGS_DIR

    copy = tmp_path / "hl7v2"
    shutil.copytree(MAPPINGS_DIR, copy)
    with (copy / "vocabulary" / "abnormal-flags.csv").open("a", encoding="utf-8") as f:
        f.write("OLDLIS|乡卫生院,1,L,Low,This LIS writes 1 for low\n")
    custom = MappingTables(copy)
    assert custom.lookup("abnormal-flags", "1", "OLDLIS|乡卫生院")["interpretation"] == "L"
    assert custom.lookup("abnormal-flags", "1", "LIS|县人民医院")["interpretation"] == "H"


def test_character_set_names():
    t = tables()
    assert t.charset_codec("UNICODE UTF-8") == "utf-8"
    assert t.charset_codec("gb 18030-2000") == "gb18030"
    assert t.charset_codec("GBK") == "gb18030"
    assert t.charset_codec("EBCDIC") is None


def test_datatype_table_lists_exactly_the_maps_the_code_has():
    import csv

    from adapters.hl7v2.datatypes import DATATYPE_MAPS
    from adapters.hl7v2.mapping_tables import MAPPINGS_DIR

    with (MAPPINGS_DIR / "datatypes.csv").open(encoding="utf-8") as f:
        documented = {row["datatype_map"] for row in csv.DictReader(f)}
    assert documented == set(DATATYPE_MAPS)
