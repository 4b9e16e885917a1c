"""HL7 v2 test messages for the inbound pipeline, MLLP, replay and the end-to-end tests.

An ORU^R01 from the county hospital's LIS: one patient (resident ID in PID-3 with type
``NNCHN``, the hospital MRN beside it), one OBR (a diabetes panel) and five OBX results with
local lab codes that the county ConceptMap maps to LOINC.
"""

from __future__ import annotations

from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

# local code, Chinese name, value, unit, reference range, abnormal flag
RESULTS = (
    ("GLU", "空腹血糖", "7.8", "mmol/L", "3.9-6.1", "H"),
    ("HBA1C", "糖化血红蛋白", "6.9", "%", "4.0-6.0", "H"),
    ("TC", "总胆固醇", "5.2", "mmol/L", "<5.2", "N"),
    ("TG", "甘油三酯", "1.6", "mmol/L", "<1.7", "N"),
    ("CREA", "肌酐", "88", "umol/L", "57-111", "N"),
)


def resident_id(serial: int, birth: date = date(1958, 3, 12), female: bool = False) -> str:
    """A GB 11643 resident ID with a valid check character (area 430523)."""
    sequence = (serial % 499) * 2 + (0 if female else 1)
    body = f"430523{birth:%Y%m%d}{sequence:03d}"
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11]
    return body + check


def oru_r01(control_id: str, *, patient: int = 1, sender: tuple[str, str] = ("LIS", "县人民医院"),
            version: str = "2.5", charset: str | None = "UNICODE UTF-8", ack_modes: tuple[str, str] = ("", ""),
            results=RESULTS, order: str | None = None, family: str = "王", given: str = "秀英") -> str:
    """An ORU^R01 as text (segments ended by ``\\r``); encode it in the charset it declares."""
    order = order or f"LAB{control_id}"
    msh = (f"MSH|^~\\&|{sender[0]}|{sender[1]}|FHIR|县卫健局平台|20260512101500+0800||ORU^R01^ORU_R01|"
           f"{control_id}|P|{version}|||{ack_modes[0]}|{ack_modes[1]}||{charset or ''}")
    lines = [
        msh.rstrip("|"),
        f"PID|1||{resident_id(patient)}^^^^NNCHN~MRN{patient:06d}^^^县人民医院^MR||{family}^{given}||19580312|M",
        f"OBR|1|P{order}|{order}|DM-PANEL^糖尿病检验组合^L|||20260512080000+0800|||||||||||||||"
        f"20260512100000+0800|||F",
    ]
    for n, (code, name, value, unit, reference, flag) in enumerate(results, start=1):
        lines.append(f"OBX|{n}|NM|{code}^{name}^L||{value}|{unit}|{reference}|{flag}|||F|||20260512093000+0800")
    return "\r".join(lines) + "\r"


def oru_bytes(control_id: str, **options) -> bytes:
    codec = "gb18030" if (options.get("charset") or "").upper().startswith("GB") else "utf-8"
    return oru_r01(control_id, **options).encode(codec)


def unsupported(control_id: str, sender: tuple[str, str] = ("HIS", "县人民医院")) -> bytes:
    """A message type the adapter does not take (refused with AR)."""
    return (f"MSH|^~\\&|{sender[0]}|{sender[1]}|FHIR|县卫健局平台|20260512101500||QRY^Q01^QRY_Q01|{control_id}|P|2.4\r"
            f"QRD|20260512|R|I|Q1\r").encode()
