"""UCUM canonicalisation for quantity search.

Every indexed Quantity is stored with a canonical ``(value, code)`` pair, and a search value is
converted the same way, so ``value-quantity=gt7|http://unitsofmeasure.org|mmol/L`` finds a glucose
sent as 140 mg/dL, and 120 mm[Hg] compares with 16 kPa.

Library: ucumvert
    ``ucumvert`` (pure Python: a Lark grammar generated from ucum-essence.xml, mapped onto pint
    units) does the parsing and the unit arithmetic. ``ucumate`` was evaluated too and rejected:
    it is a 17 MB Java jar driven through JPype and needs a Java 21 runtime (this host has 17:
    ``UnsupportedClassVersionError`` on start), so it would put a JVM inside every server and
    test process, and each call crosses the Python/Java bridge. ucumvert starts in ~0.3 s
    (built lazily on the first conversion); a cached unit costs only a dict lookup.

    ucumvert is used through its public parts (``get_ucum_parser``, ``parse_ucum``,
    ``UcumToPintTransformer``, ``pint_ucum_defs.txt``) on a *private* pint registry:
    ``PintUcumRegistry`` would also load its definitions into pint's global application
    registry. Known ucumvert gaps are patched here, not in hand-written unit tables:

    * an annotation alone (``{score}``) comes back as a lark Token: it is the unity ``1``;
    * arbitrary units (``[IU]``, ``[CFU]``, ``[arb'U]`` …; ``isArbitrary`` in ucum-essence.xml)
      are defined as plain ``1`` in pint, so ``[IU]/L`` would equal ``10*9/L``: they are kept
      as their own symbol in the canonical code (``[IU].m-3``), never converted to anything else;
    * special (non-ratio) units: pint would multiply ``Np`` and ``B`` as if linear, and does not
      know ``[pH]``. Temperatures ``Cel``, ``[degF]``, ``[degRe]`` alone are converted affinely
      to kelvin (37 Cel -> 310.15 K; code ``K``). Every other special unit, and any expression
      mixing a special unit with others (``Cel/h``), is *opaque*: the value is kept and the code
      is the unit itself without annotations, so ``[pH]`` compares only with ``[pH]``.

Canonical codes
    Built from the base units g (UCUM's base for mass: ``kg/m2`` -> ``g.m-2``, ×1000), mol, m, s,
    K, A, cd, rad, bit, in that order after any arbitrary units, with integer exponents and ``.``
    between: ``mg/dL`` -> ``g.m-3``, ``mmol/L`` -> ``mol.m-3``, ``mm[Hg]`` -> ``g.m-1.s-2``,
    ``/min`` -> ``s-1``, ``10*9/L`` -> ``m-3``, ``%`` and ``{score}`` -> ``1``. Unlike strict
    UCUM, ``mol`` stays a dimension (UCUM defines it as 6.022e23, which would make mmol/L a
    huge count per m3). A conversion factor within float noise of a 12-digit decimal is snapped to
    it, which removes pint's binary noise (``mg/dL`` = 0.009999999999999998 kg/m3 becomes
    exactly 10 g/m3) and leaves real fractions (``/min`` = 1/60 s-1) as computed.

Analytes
    ``canonicalize(value, code, analyte)`` converts a *mass concentration* (canonical ``g.m-3``)
    to *substance concentration* (``mol.m-3``) when ``analyte`` (a LOINC code, or a key of
    ``terminology/ucum/molar-masses.json``) has a molar mass. Without an analyte, mass and
    molar concentrations stay in their own dimension. ``canonical_forms`` returns both the molar
    and the mass form for such analytes, for an index that wants a mg/dL search to find a
    quantity sent in mmol/L without knowing the analyte at search time.

Local unit text
    ``to_ucum`` maps spellings seen in lab systems (``mmHg``, ``次/分``, ``μmol/L``, ``×10^9/L``)
    to UCUM from ``terminology/ucum/unit-aliases.json``.

Cost
    ``_conversion`` is an ``lru_cache`` per unit string; after the first call for a unit,
    ``canonicalize`` is a cache hit (~60 ns), a multiply-add and the frozen result object
    (~0.45 µs per call in all, most of it the dataclass constructor). The index uses
    ``canonical_conversions`` instead: the forms of a (unit, analyte) pair, cached, applied to
    each value without building ``Canonical`` objects.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import NamedTuple

__all__ = ["Canonical", "CanonicalConversion", "canonicalize", "canonical_conversions", "canonical_forms",
           "to_ucum", "molar_mass"]

TERMINOLOGY = Path(__file__).resolve().parents[2] / "terminology" / "ucum"
MOLAR_MASSES_FILE = TERMINOLOGY / "molar-masses.json"
ALIASES_FILE = TERMINOLOGY / "unit-aliases.json"

MASS_CONCENTRATION = "g.m-3"
SUBSTANCE_CONCENTRATION = "mol.m-3"


@dataclass(frozen=True, slots=True)
class Canonical:
    value: float
    code: str  # canonical UCUM unit expression: "g.m-3", "mol.m-3", "s-1", "1", "[IU].m-3", "K"


class _Conversion(NamedTuple):
    factor: float
    offset: float  # non-zero only for Cel / [degF] / [degRe]
    code: str


# --------------------------------------------------------------------------------------------
# ucumvert / pint machinery, built once on first use

# pint base unit -> (UCUM symbol, factor from the pint base unit to the UCUM one)
_BASE = {
    "kilogram": ("g", 1000.0),
    "mole": ("mol", 1.0),
    "meter": ("m", 1.0),
    "second": ("s", 1.0),
    "kelvin": ("K", 1.0),
    "ampere": ("A", 1.0),
    "candela": ("cd", 1.0),
    "radian": ("rad", 1.0),
    "bit": ("bit", 1.0),
}
_ORDER = {sym: i for i, (sym, _) in enumerate(_BASE.values())}
_TEMPERATURES = {"Cel", "[degF]", "[degRe]"}
_ARBITRARY_SYNONYMS = {"[iU]": "[IU]"}  # UCUM: [IU] is defined as 1 [iU]
_ANNOTATION = re.compile(r"\{[^{}]*\}")


class _Ucum:
    def __init__(self) -> None:
        import pint
        import ucumvert
        from ucumvert import UcumToPintTransformer, get_ucum_parser, parse_ucum
        from ucumvert.xml_util import get_units_with_full_definition

        self.ureg = pint.UnitRegistry()
        self.ureg.load_definitions(Path(ucumvert.__file__).resolve().parent / "pint_ucum_defs.txt")
        self.parser = get_ucum_parser()
        self.parse = parse_ucum
        self.transformer = UcumToPintTransformer(ureg=self.ureg)
        units = get_units_with_full_definition()
        self.special = {u.code_cs for u in units if u.is_special}
        self.arbitrary = {u.code_cs for u in units if u.is_arbitrary}


_lock = threading.RLock()
_ucum_instance: _Ucum | None = None


def _ucum() -> _Ucum:
    global _ucum_instance
    if _ucum_instance is None:
        with _lock:
            if _ucum_instance is None:
                _ucum_instance = _Ucum()
    return _ucum_instance


def _atoms(tree) -> dict[str, int]:
    """Exponent of every unit atom in a ucumvert parse tree (prefixes dropped, factors kept)."""
    from lark import Token

    if isinstance(tree, Token):
        return {}  # ANNOTATION, or an operator handled by the caller
    rule = tree.data
    kids = tree.children
    if rule == "simple_unit":
        return {str(kids[-1]): 1}
    if rule == "main_term":
        if len(kids) == 2:  # leading "/"
            return {k: -v for k, v in _atoms(kids[1]).items()}
        return _atoms(kids[0])
    if rule == "term" and len(kids) == 3:
        out = dict(_atoms(kids[0]))
        sign = -1 if str(kids[1]) == "/" else 1
        for k, v in _atoms(kids[2]).items():
            out[k] = out.get(k, 0) + sign * v
        return out
    if rule == "annotatable" and len(kids) == 2 and getattr(kids[1], "type", None) == "EXPONENT":
        return {k: v * int(kids[1]) for k, v in _atoms(kids[0]).items()}
    out: dict[str, int] = {}
    for kid in kids:  # component (unit + annotation), parenthesised terms
        for k, v in _atoms(kid).items():
            out[k] = out.get(k, 0) + v
    return out


def _round(x: float) -> float:
    """Snap pint's binary noise (0.009999999999999998 -> 0.01); keep real fractions (1/60)."""
    r = float(f"{x:.12g}")
    return r if abs(r - x) <= 1e-14 * abs(x) else x


def _exp(sym: str, e: int) -> str:
    return sym if e == 1 else f"{sym}{e}"


def _opaque(code: str) -> _Conversion:
    stripped = _ANNOTATION.sub("", code)
    return _Conversion(1.0, 0.0, stripped if stripped.strip("./") else code)


@lru_cache(maxsize=4096)
def _conversion(code: str) -> _Conversion | None:
    """How to turn a value in ``code`` into canonical form; None if ``code`` is not UCUM."""
    if not isinstance(code, str) or not code or code != code.strip():
        return None
    with _lock:  # cold path only: pint's registry caches are not documented as thread-safe
        return _compute(code)


def _compute(code: str) -> _Conversion | None:
    u = _ucum()
    from lark.exceptions import LarkError
    from ucumvert import InvalidUcumError

    try:
        tree = u.parse(code, u.parser)
    except (InvalidUcumError, LarkError):
        return None
    atoms = {a: e for a, e in _atoms(tree).items() if e and not a.isdigit()}
    ureg = u.ureg

    if any(a in u.special for a in atoms):
        only = next(iter(atoms)) if len(atoms) == 1 else None
        if only in _TEMPERATURES and _ANNOTATION.sub("", code) == only:  # no prefix, factor, power
            unit = u.transformer.transform(tree).units
            zero = ureg.Quantity(0.0, unit).to("kelvin").magnitude
            step = ureg.Quantity(1.0, f"delta_{unit}").to("kelvin").magnitude
            return _Conversion(_round(step), _round(zero), "K")
        return _opaque(code)

    try:
        q = u.transformer.transform(tree)
        if not isinstance(q, ureg.Quantity):  # ucumvert returns a bare Token for "{ann}"
            q = ureg.Quantity(1)
        base = q.to_base_units()
    except Exception:  # noqa: BLE001 - valid UCUM that pint cannot evaluate
        return _opaque(code)

    factor = float(base.magnitude)
    parts: list[tuple[tuple[int, str], str]] = []
    for name, e in base.unit_items():
        if e != int(e):
            return _opaque(code)
        e = int(e)
        if not e:
            continue
        sym, scale = _BASE.get(name, (name, 1.0))
        factor *= scale**e
        parts.append(((1, f"{_ORDER.get(sym, 99):02d}{sym}"), _exp(sym, e)))
    arbitrary: dict[str, int] = {}
    for a, e in atoms.items():
        if a in u.arbitrary:
            a = _ARBITRARY_SYNONYMS.get(a, a)
            arbitrary[a] = arbitrary.get(a, 0) + e
    parts.extend(((0, a), _exp(a, e)) for a, e in arbitrary.items() if e)
    parts.sort()
    return _Conversion(_round(factor), 0.0, ".".join(p for _, p in parts) or "1")


# --------------------------------------------------------------------------------------------
# analytes


@cache
def _molar_masses() -> dict[str, float]:
    data = json.loads(MOLAR_MASSES_FILE.read_text(encoding="utf-8"))
    out: dict[str, float] = {}
    for key, analyte in data["analytes"].items():
        mm = float(analyte["molarMass"])
        out[key] = mm
        for entry in analyte.get("loinc", ()):
            out[entry["code"]] = mm
    return out


def molar_mass(analyte: str | None) -> float | None:
    """Molar mass in g/mol of an analyte given by LOINC code or molar-mass table key."""
    return _molar_masses().get(analyte) if analyte else None


def canonicalize(value: float, ucum_code: str, analyte: str | None = None) -> Canonical | None:
    """Convert a value in a UCUM unit to the canonical base-unit form.

    Returns None if the unit is not valid UCUM. For mass-concentration and
    substance-concentration units (mg/dL, g/L, mmol/L, umol/L ...): when `analyte` (a LOINC code
    of the observation, or a key of the molar-mass table) names an analyte with a known molar
    mass, mass concentrations are converted to SUBSTANCE concentration (mol.m-3) so mg/dL and
    mmol/L of the same analyte compare; without an analyte, mass and molar stay in their own
    dimension.
    """
    conv = _conversion(ucum_code)
    if conv is None:
        return None
    v = value * conv.factor + conv.offset
    if analyte is not None and conv.code == MASS_CONCENTRATION:
        mm = _molar_masses().get(analyte)
        if mm:
            return Canonical(v / mm, SUBSTANCE_CONCENTRATION)
    return Canonical(v, conv.code)


def canonical_forms(
    value: float, ucum_code: str, analyte: str | None = None
) -> tuple[Canonical, ...]:
    """All canonical forms a quantity should be findable under.

    The first is ``canonicalize(value, ucum_code, analyte)``. For a mass or substance
    concentration of an analyte with a known molar mass, the other form follows (mol.m-3 and
    g.m-3), so an index holding both answers a mg/dL search and a mmol/L search alike even when
    the search itself does not name the analyte. Empty if the unit is not UCUM.
    """
    return tuple(Canonical(form.apply(value), form.code) for form in canonical_conversions(ucum_code, analyte))


class CanonicalConversion(NamedTuple):
    """How a value in some unit becomes one canonical form: ``apply(value)``."""

    factor: float
    offset: float
    divisor: float  # the molar mass from mass to substance concentration, else 1
    multiplier: float  # the molar mass from substance to mass concentration, else 1
    code: str

    def apply(self, value: float) -> float:
        # (x / 1) * 1 is x exactly, so each form is computed as canonicalize computes it
        return (value * self.factor + self.offset) / self.divisor * self.multiplier


@lru_cache(maxsize=4096)
def canonical_conversions(ucum_code: str, analyte: str | None = None) -> tuple[CanonicalConversion, ...]:
    """The value-independent part of ``canonical_forms``: one conversion per form, so that an
    index computes the forms of a unit and analyte once, not per quantity."""
    conv = _conversion(ucum_code)
    if conv is None:
        return ()
    mm = _molar_masses().get(analyte) if analyte else None
    if mm:
        if conv.code == MASS_CONCENTRATION:
            return (CanonicalConversion(conv.factor, conv.offset, mm, 1.0, SUBSTANCE_CONCENTRATION),
                    CanonicalConversion(conv.factor, conv.offset, 1.0, 1.0, MASS_CONCENTRATION))
        if conv.code == SUBSTANCE_CONCENTRATION:
            return (CanonicalConversion(conv.factor, conv.offset, 1.0, 1.0, SUBSTANCE_CONCENTRATION),
                    CanonicalConversion(conv.factor, conv.offset, 1.0, mm, MASS_CONCENTRATION))
    return (CanonicalConversion(conv.factor, conv.offset, 1.0, 1.0, conv.code),)


# --------------------------------------------------------------------------------------------
# local unit text -> UCUM

_SUPERSCRIPT_POWER = re.compile(r"10([⁰¹²³⁴⁵⁶⁷⁸⁹]+)")
_POWER = re.compile(r"^(?:[x×X*]?)10(?:\^|\*|[Ee])(\d+)(?=/|$)")
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")


def _normalize(text: str) -> str:
    text = _SUPERSCRIPT_POWER.sub(lambda m: "10^" + m.group(1).translate(_SUPERSCRIPTS), text)
    text = unicodedata.normalize("NFKC", text)  # m² -> m2, ㎡ -> m2, µ -> μ, fullwidth -> ASCII
    return "".join(text.split()).replace("μ", "u")


@cache
def _aliases() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    raw: dict[str, str] = json.loads(ALIASES_FILE.read_text(encoding="utf-8"))["aliases"]
    normalized = {_normalize(k): v for k, v in raw.items()}
    folded = {k.casefold(): v for k, v in normalized.items()}
    return raw, normalized, folded


@lru_cache(maxsize=4096)
def to_ucum(unit_text: str) -> str | None:
    """The UCUM code for a unit as written by a local system ("mmHg", "次/分", "μmol/L"), or None.

    Valid UCUM is returned unchanged (after Unicode normalisation); see unit-aliases.json for
    the lookup order.
    """
    if not isinstance(unit_text, str) or not unit_text.strip():
        return None
    raw, normalized, folded = _aliases()
    if unit_text in raw:
        return raw[unit_text]
    text = _normalize(unit_text)
    if text in normalized:
        return normalized[text]
    if _conversion(text) is not None:
        return text
    if text.casefold() in folded:
        return folded[text.casefold()]
    m = _POWER.match(text)
    if m:  # ×10^9/L, 10E9/L, x10*12/l ...
        rest = text[m.end():]
        rest_ucum = to_ucum(rest[1:]) if rest else ""
        if rest_ucum is not None:
            candidate = f"10*{m.group(1)}" + (f"/{rest_ucum}" if rest else "")
            if "." not in rest_ucum and "/" not in rest_ucum and _conversion(candidate) is not None:
                return candidate
    return None
