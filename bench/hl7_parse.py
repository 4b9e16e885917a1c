"""Raw parse rate of each HL7 v2 parser, and of the whole translation, for a 5-OBX ORU^R01.

    python bench/hl7_parse.py [--messages 2000]

Prints messages per second for:

- ``decode``: bytes -> segment lines (character set, separators), shared by both parsers;
- ``hl7`` / ``hl7apy``: decode + parse into the neutral ``V2Message`` (adapters/hl7v2/parsing.py);
- ``translate (no store)``: decode + parse + mapping into the transaction Bundle, without a
  server (no patient look-up, no LOINC translation): the CPU cost of the mapping itself.

``parse_rates(n)`` returns the same figures as a dict (the ingest benchmark prints them beside
its own). Single process, wall clock; on a shared machine the figures vary with the load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.hl7v2.decoding import decode  # noqa: E402
from adapters.hl7v2.parsing import PARSERS, parser_named  # noqa: E402
from adapters.hl7v2.translate import translate  # noqa: E402

__all__ = ["parse_rates", "sample_oru"]


def sample_oru(control: str = "MSG0001") -> bytes:
    """A realistic ORU^R01 of the county hospital's LIS with five results (UTF-8)."""
    return ("\r".join([
        f"MSH|^~\\&|LIS|县人民医院|FHIR|CHN|20260512153000||ORU^R01^ORU_R01|{control}|P|2.5|||AL|NE||UNICODE UTF-8",
        "PID|1||ZY2026000123^^^XRMYY^MR~430530197201219824^^^^NNCHN||王^秀英||19720121|2|||"
        "柳冲镇上垅村6组42号^^邵阳市^湖南省^^CN^H^^青山县||13800001111",
        "ORC|RE|PL20260512001|FL20260512001",
        "OBR|1|PL20260512001|FL20260512001|BIOCHEM^生化检验^L|||20260512083000|||||||||||||||20260512150000|||F",
        "OBX|1|NM|GLU^空腹血糖^L||7.8|mmol/L|3.9-6.1|↑|||F|||20260512083000||1001^李^明",
        "OBX|2|NM|HBA1C^糖化血红蛋白^L||7.2|%|4.0-6.0|H|||F",
        "OBX|3|SN|GLU-R^随机血糖^L||>^16.7|mmol/L|3.9-11.1|1|||F",
        "OBX|4|NM|TC^总胆固醇^L||5.6|mmol/L|<5.2|H|||F",
        "OBX|5|NM|LDL-C^低密度脂蛋白胆固醇^L||3.1|mmol/L|<3.4|N|||F",
        "SPM|1|SP001&LIS^SP001F&LIS||SER^血清^HL70487|||||||||||||20260512083000",
    ]) + "\r").encode("utf-8")


def _rate(n: int, work) -> float:
    raw = sample_oru()
    work(raw)  # warm up (imports, caches)
    start = time.perf_counter()
    for _ in range(n):
        work(raw)
    return n / (time.perf_counter() - start)


def parse_rates(n: int = 1000) -> dict[str, float]:
    """Messages per second of each step; hl7apy runs on n/20 messages (it is that much slower)."""
    rates = {"decode": _rate(n, decode)}
    for name in sorted(PARSERS):
        parser = parser_named(name)
        count = n if name != "hl7apy" else max(20, n // 20)
        rates[name] = _rate(count, lambda raw, p=parser: p.parse(decode(raw)))
    rates["translate (no store)"] = _rate(max(50, n // 4), lambda raw: translate(raw, None))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    rates = parse_rates(args.messages)
    print(f"\nHL7 v2 parse rate, ORU^R01 with 5 OBX ({args.messages} messages; hl7apy on fewer)\n")
    print(f"| {'step':<22} | {'messages/s':>10} | {'ms/message':>10} |")
    print(f"|{'-' * 24}|{'-' * 12}:|{'-' * 12}:|")
    for name, rate in rates.items():
        print(f"| {name:<22} | {rate:>10.0f} | {1000 / rate:>10.3f} |")


if __name__ == "__main__":
    main()
