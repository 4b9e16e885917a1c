"""UCUM canonicalisation for quantity search (fhir_server.search.units)."""

from __future__ import annotations

import json
import re

import pytest

from fhir_server.search import units
from fhir_server.search.units import Canonical, canonical_forms, canonicalize, molar_mass, to_ucum

GLUCOSE_SERUM_MASS = "2345-7"


def same(a: Canonical | None, b: Canonical | None, tol: float = 1e-9) -> bool:
    assert a is not None and b is not None
    return a.code == b.code and abs(a.value - b.value) <= tol * max(1.0, abs(a.value), abs(b.value))


# ---------------------------------------------------------------------------------------------
# the motivating case


def test_glucose_mg_dl_equals_mmol_l_with_glucose_loinc():
    stored = canonicalize(140, "mg/dL", GLUCOSE_SERUM_MASS)
    searched = canonicalize(7.77, "mmol/L")  # a search value carries no analyte
    assert stored.code == searched.code == "mol.m-3"
    assert abs(stored.value - searched.value) < 0.01
    assert stored.value > canonicalize(7, "mmol/L").value  # value-quantity=gt7|...|mmol/L finds it


def test_analyte_may_be_given_by_table_key():
    by_key = canonicalize(140, "mg/dL", "glucose")
    assert same(by_key, canonicalize(140, "mg/dL", GLUCOSE_SERUM_MASS))


def test_without_analyte_mass_and_molar_stay_apart():
    assert canonicalize(140, "mg/dL") == Canonical(1400.0, "g.m-3")
    assert canonicalize(7.77, "mmol/L") == Canonical(7.77, "mol.m-3")


def test_unknown_analyte_leaves_mass_concentration():
    assert canonicalize(1, "mg/dL", "718-7").code == "g.m-3"  # haemoglobin: no molar mass in table


def test_molar_units_are_not_touched_by_the_analyte():
    assert canonicalize(88.4, "umol/L", "14682-9") == canonicalize(88.4, "umol/L")


def test_analyte_only_converts_mass_concentrations():
    assert canonicalize(2, "g", GLUCOSE_SERUM_MASS) == Canonical(2.0, "g")
    assert canonicalize(10, "mg/(24.h)", GLUCOSE_SERUM_MASS).code == "g.s-1"


# ---------------------------------------------------------------------------------------------
# dimensions and special units


def test_mg_dl_and_g_l_same_dimension():
    assert same(canonicalize(100, "mg/dL"), canonicalize(1, "g/L"))
    assert canonicalize(1, "g/L") == Canonical(1000.0, "g.m-3")


def test_exact_factors_without_float_noise():
    assert canonicalize(1, "mg/dL") == Canonical(10.0, "g.m-3")
    assert canonicalize(1, "umol/L") == Canonical(0.001, "mol.m-3")


def test_mmhg_vs_kpa():
    mmhg = canonicalize(120, "mm[Hg]")
    kpa = canonicalize(15.9987, "kPa")
    assert mmhg.code == kpa.code == "g.m-1.s-2"
    assert abs(mmhg.value - kpa.value) / kpa.value < 1e-5
    one_kpa = canonicalize(7.50062, "mm[Hg]").value
    assert canonicalize(1, "kPa").value == pytest.approx(one_kpa, rel=1e-6)


def test_percent_is_dimensionless_times_0_01():
    assert canonicalize(6.5, "%") == Canonical(0.065, "1")
    assert canonicalize(6.5, "%{HbA1c}") == canonicalize(6.5, "%")  # annotations are 1
    assert same(canonicalize(65, "[ppth]"), canonicalize(6.5, "%"))


def test_rates_per_minute():
    assert canonicalize(72, "/min") == canonicalize(72, "{beats}/min")
    assert canonicalize(72, "/min").code == "s-1"
    assert same(canonicalize(60, "/min"), canonicalize(1, "/s"))


def test_annotation_alone_is_unity():
    assert canonicalize(9, "{score}") == Canonical(9.0, "1")
    assert canonicalize(3, "/{tot}") == Canonical(3.0, "1")


def test_counts_per_volume():
    assert canonicalize(5.2, "10*9/L") == Canonical(5.2e12, "m-3")
    assert same(canonicalize(5.2, "10*9/L"), canonicalize(5.2, "10*3/uL"))
    assert same(canonicalize(5.2, "10^9/L"), canonicalize(5.2, "10*9/L"))


def test_body_measures():
    assert canonicalize(24.2, "kg/m2") == Canonical(24200.0, "g.m-2")
    assert same(canonicalize(70, "kg"), canonicalize(70000, "g"))
    assert same(canonicalize(172, "cm"), canonicalize(1.72, "m"))
    assert same(canonicalize(12, "[in_i]"), canonicalize(30.48, "cm"))


def test_egfr_body_surface_annotation_is_unity():
    assert canonicalize(90, "mL/min/{1.73_m2}") == canonicalize(90, "mL/min")
    assert canonicalize(90, "mL/min/{1.73_m2}").code == "m3.s-1"


def test_temperatures_are_affine():
    assert canonicalize(37, "Cel") == Canonical(310.15, "K")
    assert same(canonicalize(98.6, "[degF]"), canonicalize(37, "Cel"), tol=1e-12)
    assert same(canonicalize(0, "[degRe]"), canonicalize(0, "Cel"))
    assert canonicalize(310.15, "K") == Canonical(310.15, "K")


def test_special_units_that_cannot_be_converted_are_opaque():
    # kept as sent, comparable only with the same unit
    assert canonicalize(7.4, "[pH]") == Canonical(7.4, "[pH]")
    assert canonicalize(7.4, "[pH]{arterial}") == Canonical(7.4, "[pH]")
    assert canonicalize(2, "Cel/h") == Canonical(2.0, "Cel/h")  # affine unit inside an expression
    assert canonicalize(3, "Np") == Canonical(3.0, "Np")  # logarithmic: not 3 * e


def test_arbitrary_units_keep_their_own_dimension():
    iu = canonicalize(5, "[IU]/L")
    assert iu == Canonical(5000.0, "[IU].m-3")
    assert iu.code != canonicalize(5, "10*9/L").code  # ucumvert alone makes [IU] == 1
    assert same(canonicalize(5, "m[IU]/mL"), iu)
    assert same(canonicalize(5, "[iU]/L"), iu)  # UCUM: [IU] = 1 [iU]
    assert canonicalize(1, "[CFU]/mL").code == "[CFU].m-3"


def test_enzyme_activity():
    assert canonicalize(40, "U/L").code == "mol.m-3.s-1"
    assert same(canonicalize(1, "U/L"), canonicalize(1, "umol/min/L"))


@pytest.mark.parametrize(
    "code", ["foo", "", " mg", "mg/dL ", "mmHg", "mg/dl/", "IU/L", "10^9/L(", "Torr", None, 7]
)
def test_invalid_ucum_is_none(code):
    assert canonicalize(1, code) is None
    assert canonical_forms(1, code) == ()


def test_canonical_is_frozen():
    c = canonicalize(1, "mg")
    with pytest.raises(AttributeError):
        c.value = 2  # type: ignore[misc]


def test_conversion_is_cached_per_unit_string():
    units._conversion.cache_clear()
    canonicalize(1, "mmol/L")
    canonicalize(2, "mmol/L", GLUCOSE_SERUM_MASS)
    canonicalize(3, "foo")
    canonicalize(4, "foo")
    info = units._conversion.cache_info()
    assert (info.misses, info.hits) == (2, 2)  # invalid units are cached too


def test_canonical_forms_mass_and_molar():
    mol, mass = canonical_forms(140, "mg/dL", GLUCOSE_SERUM_MASS)
    assert mol == canonicalize(140, "mg/dL", GLUCOSE_SERUM_MASS)
    assert mass == Canonical(1400.0, "g.m-3")
    mol, mass = canonical_forms(7.77, "mmol/L", "14749-6")
    assert mol == Canonical(7.77, "mol.m-3")
    assert mass.code == "g.m-3" and mass.value == pytest.approx(7.77 * 180.16)
    assert canonical_forms(140, "mg/dL") == (Canonical(1400.0, "g.m-3"),)
    assert canonical_forms(120, "mm[Hg]", GLUCOSE_SERUM_MASS) == (canonicalize(120, "mm[Hg]"),)


# ---------------------------------------------------------------------------------------------
# molar-mass table

TABLE = json.loads(units.MOLAR_MASSES_FILE.read_text(encoding="utf-8"))["analytes"]

# one known clinical conversion per analyte: (mass value, mass unit) == (molar value, molar unit)
CLINICAL = {
    "glucose": ((18.016, "mg/dL"), (1, "mmol/L")),
    "cholesterol": ((38.67, "mg/dL"), (1, "mmol/L")),
    "cholesterol-ldl": ((38.67, "mg/dL"), (1, "mmol/L")),
    "cholesterol-hdl": ((38.67, "mg/dL"), (1, "mmol/L")),
    "cholesterol-non-hdl": ((38.67, "mg/dL"), (1, "mmol/L")),
    "triglyceride": ((88.57, "mg/dL"), (1, "mmol/L")),
    "creatinine": ((1, "mg/dL"), (88.4, "umol/L")),
    "urate": ((1, "mg/dL"), (59.48, "umol/L")),
}


def test_every_analyte_has_a_clinical_check():
    assert set(TABLE) == set(CLINICAL)


@pytest.mark.parametrize("key", sorted(CLINICAL))
def test_mass_to_molar_per_analyte(key):
    (mv, mu), (sv, su) = CLINICAL[key]
    expected = canonicalize(sv, su)
    for analyte in [key] + [e["code"] for e in TABLE[key]["loinc"]]:
        got = canonicalize(mv, mu, analyte)
        assert got.code == "mol.m-3"
        assert got.value == pytest.approx(expected.value, rel=1e-3), analyte


def test_table_entries_are_well_formed():
    seen: dict[str, str] = {}
    for key, analyte in TABLE.items():
        assert analyte["molarMass"] > 0 and analyte["source"].strip()
        assert {e["property"] for e in analyte["loinc"]} == {"MCnc", "SCnc"}, key  # both kinds
        for entry in analyte["loinc"]:
            assert entry["code"] not in seen, (entry["code"], seen.get(entry["code"]), key)
            seen[entry["code"]] = key
            assert molar_mass(entry["code"]) == analyte["molarMass"]
    assert molar_mass(None) is None and molar_mass("nope") is None


def _loinc_check_digit_ok(code: str) -> bool:
    """LOINC codes end in a mod-10 (Luhn) check digit."""
    m = re.fullmatch(r"(\d{1,7})-(\d)", code)
    if not m:
        return False
    total = 0
    for i, ch in enumerate(reversed(m.group(1))):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d // 10 + d % 10
    return (10 - total % 10) % 10 == int(m.group(2))


def test_loinc_codes_have_valid_check_digits():
    codes = [e["code"] for a in TABLE.values() for e in a["loinc"]]
    bad = [c for c in codes if not _loinc_check_digit_ok(c)]
    assert not bad
    assert not _loinc_check_digit_ok("2345-8")


# ---------------------------------------------------------------------------------------------
# local unit text


@pytest.mark.parametrize(
    ("text", "ucum"),
    [
        ("mmHg", "mm[Hg]"),
        ("mm Hg", "mm[Hg]"),
        ("mmol/l", "mmol/L"),
        ("MMOL/L", "mmol/L"),
        ("ｍｍｏｌ／Ｌ", "mmol/L"),  # fullwidth
        ("umol/L", "umol/L"),
        ("μmol/L", "umol/L"),  # greek mu
        ("µmol/L", "umol/L"),  # micro sign
        ("μmol/l", "umol/L"),
        ("%", "%"),
        ("次/分", "/min"),
        ("次/分钟", "/min"),
        ("bpm", "/min"),
        ("kg/m2", "kg/m2"),
        ("kg/m²", "kg/m2"),
        ("kg/㎡", "kg/m2"),
        ("cm", "cm"),
        ("kg", "kg"),
        ("mg/dL", "mg/dL"),
        ("mg/dl", "mg/dL"),
        ("g/L", "g/L"),
        ("ng/ml", "ng/mL"),
        ("IU/L", "[IU]/L"),
        ("mIU/L", "m[IU]/L"),
        ("μIU/mL", "u[IU]/mL"),
        ("×10^9/L", "10*9/L"),
        ("x10^12/L", "10*12/L"),
        ("10E9/L", "10*9/L"),
        ("×10⁹/L", "10*9/L"),
        ("℃", "Cel"),
        ("°C", "Cel"),
        ("ml/min/1.73m²", "mL/min/{1.73_m2}"),
        ("mEq/L", "meq/L"),
        ("岁", "a"),
        ("分钟", "min"),
        ("分", "{score}"),
        (" mmol/L ", "mmol/L"),
        ("pg/mL", "pg/mL"),  # valid UCUM that is not in the table
    ],
)
def test_to_ucum(text, ucum):
    assert to_ucum(text) == ucum
    assert canonicalize(1, to_ucum(text)) is not None


@pytest.mark.parametrize("text", ["", "   ", "foo", "mg%x", "斤", None])
def test_to_ucum_unknown(text):
    assert to_ucum(text) is None


def test_alias_table_targets_are_valid_ucum():
    raw = json.loads(units.ALIASES_FILE.read_text(encoding="utf-8"))["aliases"]
    assert [v for v in raw.values() if canonicalize(1, v) is None] == []


def test_alias_table_has_no_conflicting_spellings():
    raw = json.loads(units.ALIASES_FILE.read_text(encoding="utf-8"))["aliases"]
    by_folded: dict[str, set[str]] = {}
    for k, v in raw.items():
        by_folded.setdefault(units._normalize(k).casefold(), set()).add(v)
    assert {k: v for k, v in by_folded.items() if len(v) > 1} == {}


def test_local_text_then_canonical_compares():
    bp = canonicalize(120, to_ucum("mmHg"))
    assert same(bp, canonicalize(120, "mm[Hg]"))
    assert same(canonicalize(5.2, to_ucum("×10^9/L")), canonicalize(5.2, "10*9/L"))
    glucose = canonicalize(140.5, "mg/dL", "glucose")
    assert same(canonicalize(7.8, to_ucum("mmol/l")), glucose, tol=1e-3)
