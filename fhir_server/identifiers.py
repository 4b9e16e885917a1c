"""Chinese national identifiers, built and checked by their standards' rules (validation,
adapters and the synthetic county use them).

- Resident identity card number (居民身份证号码, GB 11643-1999): 6-digit address code
  (GB/T 2260 division), 8-digit birth date ``YYYYMMDD``, 3-digit sequence code (odd for
  men, even for women) and one ISO 7064 MOD 11-2 check character (``0-9`` or ``X``).
- Health-record number (健康档案编号): 17 digits = county division code (6) + township (3)
  + village or residents' committee (3; 001-099 urban committees, 101-199 village
  committees) + serial (5).
- Unified social credit code (统一社会信用代码, GB 32100-2015) used as the institution code
  of the network's organisations: registration authority (1) + institution category (1)
  + county division code (6) + organisation code (9, GB 11714, with its own check
  character) + one check character (mod 31).

All functions are pure; the invalid cases raise ``ValueError`` (builders) or return
``False`` (validators).
"""

from __future__ import annotations

from datetime import date

__all__ = [
    "RESIDENT_ID_WEIGHTS",
    "RESIDENT_ID_CHECK_CHARACTERS",
    "resident_id",
    "resident_id_check_character",
    "is_valid_resident_id",
    "health_record_number",
    "organization_code",
    "unified_social_credit_code",
    "is_valid_unified_social_credit_code",
]

RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
RESIDENT_ID_CHECK_CHARACTERS = "10X98765432"

# First two digits of a GB/T 2260 division code: the provinces, autonomous regions and
# municipalities (71 Taiwan, 81 Hong Kong, 82 Macao are also assigned).
_PROVINCE_CODES = frozenset(
    ["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82"]
)


def resident_id_check_character(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits of a resident ID."""
    if len(first17) != 17 or not first17.isdigit() or not first17.isascii():
        raise ValueError("a resident ID body is 17 ASCII digits")
    total = sum(int(digit) * weight for digit, weight in zip(first17, RESIDENT_ID_WEIGHTS, strict=True))
    return RESIDENT_ID_CHECK_CHARACTERS[total % 11]


def resident_id(region_code: str, birth_date: date, serial: int, sex: str) -> str:
    """Build an 18-character resident ID number.

    ``serial`` numbers the people of one sex born on ``birth_date`` in ``region_code``
    (0-499); the 3-digit sequence code is ``2 * serial + 1`` for ``"male"`` (odd) and
    ``2 * serial`` for ``"female"`` (even), so ``resident_id("110105", date(1949, 12, 31),
    1, "female")`` is the textbook example ``11010519491231002X``.
    """
    if len(region_code) != 6 or not region_code.isdigit() or not region_code.isascii():
        raise ValueError("region_code is a 6-digit GB/T 2260 division code")
    if not 0 <= serial <= 499:
        raise ValueError("serial must be in 0..499 (500 sequence codes per sex and day)")
    if sex == "male":
        sequence = 2 * serial + 1
    elif sex == "female":
        sequence = 2 * serial
    else:
        raise ValueError("sex must be 'male' or 'female' (the sequence code encodes it)")
    born = f"{birth_date.year:04d}{birth_date.month:02d}{birth_date.day:02d}"
    body = f"{region_code}{born}{sequence:03d}"
    return body + resident_id_check_character(body)


def is_valid_resident_id(s: object) -> bool:
    """True when ``s`` is a well-formed 18-character resident ID with a correct check character.

    Checks: 17 ASCII digits then a digit or upper-case ``X``; a known province prefix; a
    real calendar date (year 1800 or later); the GB 11643 check character.
    """
    if not isinstance(s, str) or len(s) != 18:
        return False
    body, check = s[:17], s[17]
    if not (body.isascii() and body.isdigit()) or check not in "0123456789X":
        return False
    if body[:2] not in _PROVINCE_CODES:
        return False
    try:
        born = date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        return False
    if born.year < 1800:
        return False
    return resident_id_check_character(body) == check


def _digits(value: str | int, width: int, name: str) -> str:
    text = f"{value:0{width}d}" if isinstance(value, int) else value
    if len(text) != width or not text.isdigit() or not text.isascii():
        raise ValueError(f"{name} must be {width} digits, got {value!r}")
    return text


def health_record_number(
    county6: str | int, township3: str | int, village3: str | int, serial5: str | int
) -> str:
    """The 17-digit resident health-record number: county + township + village + serial."""
    return (
        _digits(county6, 6, "county6")
        + _digits(township3, 3, "township3")
        + _digits(village3, 3, "village3")
        + _digits(serial5, 5, "serial5")
    )


# GB 11714 organisation code: 8 body characters (digits, upper-case letters) + check.
_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
# GB 32100 character set (no I, O, S, V, Z) and weights 3**i mod 31.
_USCC_CHARACTERS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def organization_code(body8: str) -> str:
    """A 9-character GB 11714 organisation code: ``body8`` plus its check character."""
    if len(body8) != 8 or not body8.isascii() or not body8.isalnum() or body8 != body8.upper():
        raise ValueError("an organisation code body is 8 digits or upper-case letters")
    total = sum(int(ch, 36) * weight for ch, weight in zip(body8, _ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    return body8 + {10: "X", 11: "0"}.get(check, str(check))


def _uscc_check(first17: str) -> str:
    total = sum(_USCC_CHARACTERS.index(ch) * w for ch, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARACTERS[(31 - total % 31) % 31]


def unified_social_credit_code(
    division6: str, organization_body8: str, authority: str = "1", category: str = "2"
) -> str:
    """An 18-character unified social credit code; defaults ``12`` = public institution (事业单位)."""
    _digits(division6, 6, "division6")
    first17 = authority + category + division6 + organization_code(organization_body8)
    if any(ch not in _USCC_CHARACTERS for ch in first17):
        raise ValueError("character outside the GB 32100 character set")
    return first17 + _uscc_check(first17)


def is_valid_unified_social_credit_code(s: object) -> bool:
    """True when ``s`` has the GB 32100 shape and both check characters are right."""
    if not isinstance(s, str) or len(s) != 18 or any(ch not in _USCC_CHARACTERS for ch in s):
        return False
    if not s[2:8].isdigit():
        return False
    try:
        if organization_code(s[8:16]) != s[8:17]:
            return False
    except ValueError:
        return False
    return _uscc_check(s[:17]) == s[17]
