"""The tables in mappings/cda/ are complete and consistent (no server needed)."""

from __future__ import annotations

import dataclasses

from adapters.public_health.cda.follow_up_document import DOCUMENT_KINDS
from adapters.public_health.cda.mapping import document_kinds, entry_maps, entry_xpath, header_maps, value_table
from adapters.public_health.cda.referral_document import ReferralRecord
from adapters.public_health.follow_up_record import record_fields

HEADER_FIELDS_OF_THE_FORM = {"name", "resident_id", "health_record_number", "doctor"}
HYPERTENSION_ONLY = {"heart_rate", "salt_intake", "target_salt_intake"}
DIABETES_ONLY = {"dorsalis_pedis_pulse", "dorsalis_pedis_side", "staple_food_g_per_day",
                 "target_staple_food_g_per_day", "fasting_glucose", "hba1c", "hba1c_date", "hypoglycaemia",
                 "insulin_type", "insulin_usage"}


def test_every_form_field_has_a_place_in_its_document():
    form = set(record_fields())
    hypertension = {e.field for e in entry_maps("hypertension-follow-up")}
    diabetes = {e.field for e in entry_maps("diabetes-follow-up")}
    assert hypertension | HEADER_FIELDS_OF_THE_FORM == form - DIABETES_ONLY
    assert diabetes | HEADER_FIELDS_OF_THE_FORM == form - HYPERTENSION_ONLY


def test_every_referral_field_has_a_place_in_the_document():
    body = {e.field for e in entry_maps("referral")}
    header = {"document_id", "document_id_root", "resident_id", "health_record_number", "name", "sex_code",
              "birth_date", "authored", "doctor", "from_org_code", "from_org_name", "to_org_code", "to_org_name",
              "contact"}  # contact: the address and telephone fields of the header
    assert body | header == {f.name for f in dataclasses.fields(ReferralRecord)}
    assert not body & header


def test_entries_are_unique_and_their_codes_resolve():
    for kind in document_kinds():
        seen = set()
        for entry in entry_maps(kind):
            if entry.value_type in ("CD", "CD*"):
                table = value_table(entry.value_table)
                assert table.oid and table.displays, (kind, entry.field)
            if entry.value_type != "SBADM":
                assert entry.entry_system, (kind, entry.field)
            key = (entry.entry_key, entry.value_type == "EFF")
            assert key not in seen, (kind, entry.field)
            seen.add(key)
            assert entry_xpath(entry).startswith("cda:component/cda:structuredBody/")


def test_the_document_kinds_are_the_three_of_the_issue():
    assert set(document_kinds()) == {*DOCUMENT_KINDS.values(), "referral"}
    assert {k.template_id for k in document_kinds().values()} == {
        "2.16.156.10011.2.1.1.12", "2.16.156.10011.2.1.1.13", "2.16.156.10011.2.1.1.20"}
    assert all(k.document_code_system == "2.16.156.10011.2.4" for k in document_kinds().values())


def test_header_uses_the_national_identifier_roots():
    maps = header_maps()
    assert "@root='2.16.156.10011.1.3'" in maps["resident_id"].xpath
    assert "@root='2.16.156.10011.1.2'" in maps["health_record_number"].xpath
    assert "@codeSystem='2.16.156.10011.2.3.3.4'" in maps["sex_code"].xpath
    assert "@root='2.16.156.10011.1.5'" in maps["author_org_code"].xpath
