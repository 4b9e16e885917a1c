"""Benchmark: importing public-health follow-up records (issue 6; done-when: 10,000 rows < 60 s).

    python bench/followup_import.py --rows 10000 --patients 2500
    python bench/followup_import.py --rows 10000 --patients 2500 --workers 2
    python bench/followup_import.py --rows 10000 --database-url postgresql+psycopg://...

Loads a synthetic county (the demo) into a fresh database (not timed), writes a
hypertension follow-up CSV of ``--rows`` rows for its hypertension patients (Chinese
headers, code digits and words mixed, two medications on most rows, about 1.5% urgent blood
pressures, visits after the demo's window so that none is "already recorded"), then times:

1. the first import (every row created: Encounter, 5-8 Observations, 1-2
   MedicationStatements, Goal, CarePlan update, urgent ServiceRequest + Task where due), and
2. the same file again (every row unchanged: no new versions).

The import runs in-process, one transaction per row, as ``python -m fhir_server
import-followups`` does (validation on). Prints a table.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.public_health.follow_up_import import import_file  # noqa: E402
from bench.databases import OUT, sqlite_url  # noqa: E402
from fhir_server.demo import codes  # noqa: E402
from fhir_server.demo.county import generate_county  # noqa: E402
from fhir_server.demo.loader import write_batch  # noqa: E402
from fhir_server.server import Server, start_server  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402

HEADERS = ["姓名", "身份证号", "健康档案编号", "随访日期", "随访方式", "症状", "收缩压", "舒张压", "体重", "目标体重",
           "体质指数", "心率", "日吸烟量", "目标日吸烟量", "日饮酒量", "运动次数", "运动时长", "摄盐情况", "目标摄盐情况",
           "心理调整", "遵医行为", "服药依从性", "药物不良反应", "此次随访分类", "药物名称1", "用法用量1", "药物名称2",
           "用法用量2", "下次随访日期", "随访医生"]
DRUGS = [("氨氯地平片", "每日1次，每次5mg"), ("硝苯地平控释片", "每日1次，每次30mg"), ("缬沙坦胶囊", "每日1次，每次80mg"),
         ("氢氯噻嗪片", "每日1次，每次12.5mg"), ("美托洛尔缓释片", "每日1次，每次47.5mg")]


def load_county(server: Server, patients: int) -> list[tuple[str, str, str]]:
    """Load the demo; (name, resident ID, health-record number) of its hypertension patients."""
    managed = []
    for batch in generate_county(patients, seed=2026):
        write_batch(server, batch)
        patient = next((r for r in batch if r["resourceType"] == "Patient"), None)
        if patient and any(r["resourceType"] == "Condition" and r["code"]["coding"][0]["code"] == "I10" for r in batch):
            ids = {i["system"]: i["value"] for i in patient["identifier"]}
            managed.append((patient["name"][0]["text"], ids[codes.OID_RESIDENT_ID], ids[codes.OID_HEALTH_RECORD]))
    server.db.analyze()
    return managed


def follow_up_csv(patients: list[tuple[str, str, str]], rows: int, rng: random.Random) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADERS)
    first = date(2026, 7, 1)
    for n in range(rows):
        name, resident, health = patients[n % len(patients)]
        visit = first + timedelta(days=14 * (n // len(patients)) + rng.randrange(0, 10))
        urgent = rng.random() < 0.015
        sbp = rng.randint(180, 196) if urgent else rng.randint(112, 168)
        dbp = rng.randint(70, min(sbp - 30, 108))
        controlled = sbp < 140 and dbp < 90
        drugs = rng.sample(DRUGS, 2 if rng.random() < 0.7 else 1) + [("", "")]
        words = rng.random() < 0.5  # half the rows use the form's words instead of its digits
        writer.writerow([
            name, resident, health if rng.random() < 0.8 else "", visit.isoformat(),
            "门诊" if words else rng.choice("1123"), rng.choice(["1", "2", "头痛头晕", "2,4"]),
            sbp, dbp, round(rng.uniform(50, 90), 1), "", round(rng.uniform(19, 30), 1), rng.randint(58, 96),
            rng.choice([0, 0, 5, 10]), 0, rng.choice([0, 0, 1, 2]), rng.randint(0, 7), rng.choice([0, 20, 30, 60]),
            rng.choice(["1", "2", "3", "轻", "中"]), "1", "1", rng.choice(["1", "2"]),
            "规律" if words else "1", "1", ("控制满意" if controlled else "控制不满意") if words else
            ("1" if controlled else "2"), drugs[0][0], drugs[0][1], drugs[1][0], drugs[1][1],
            (visit + timedelta(days=90 if controlled else 14)).isoformat(), "随访医生",
        ])
    return buffer.getvalue().encode("utf-8")


def where_time_goes(server: Server, data: bytes, count: int) -> list[tuple[str, float]]:
    """Build the Bundles of every row moved to new visit days (not written), as an import does
    (the file's look-ups at once, then row by row), then check and index the resources of the
    first ``count`` rows as a write does before its database transaction."""
    from dataclasses import replace

    from adapters.public_health.columns import column_map
    from adapters.public_health.follow_up_bundle import build
    from adapters.public_health.patient_context import ImportCache
    from adapters.public_health.reading import read_rows, to_record
    from fhir_server.auth.identity import SYSTEM

    columns = column_map("hypertension")
    records = [to_record(row, columns) for row in read_rows(data, "csv")]
    records = [replace(r, visit_date=r.visit_date + timedelta(days=400)) for r in records]
    started = time.perf_counter()
    cache = ImportCache()
    with server.db.read() as conn:
        cache.prefetch(server, conn, records, SYSTEM)
        bundles = [build(server, conn, r, SYSTEM, cache).bundle for r in records]
    built = time.perf_counter() - started
    resources = [e["resource"] for b in bundles[:count] for e in b["entry"] if "resource" in e]
    started = time.perf_counter()
    for resource in resources:
        server.resources.prepare(resource, resource["resourceType"])
    checked = time.perf_counter() - started
    return [("look-ups and Bundle", 1000 * built / len(records)),
            (f"validation and index rows of its {len(resources) / count:.1f} resources", 1000 * checked / count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--patients", type=int, default=2_500, help="demo patients (about 60%% hypertensive)")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file in bench/out")
    parser.add_argument("--workers", type=int, default=1, help="processes writing the records")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    url = args.database_url or sqlite_url("followup")
    server = start_server(Settings(database_url=url))
    started = time.perf_counter()
    patients = load_county(server, args.patients)
    load_seconds = time.perf_counter() - started
    data = follow_up_csv(patients, args.rows, random.Random(6))
    (OUT / "followups.csv").write_bytes(data)
    results = []
    for label in ("first import", "same file again"):
        started = time.perf_counter()
        report = import_file(server, data, kind="hypertension", name="followups.csv", workers=args.workers)
        seconds = time.perf_counter() - started
        counts = ", ".join(f"{n} {s}" for s, n in report.counts.items() if n)
        results.append((label, seconds, counts))
    stages = where_time_goes(server, data, 200)
    server.close()
    engine = url.split(":", 1)[0]
    print(f"\nfollow-up import, {engine}, {args.workers} writing process(es): {args.rows} rows for "
          f"{len(patients)} hypertension patients "
          f"(demo of {args.patients} patients loaded in {load_seconds:.0f} s, not timed)\n")
    print("| run | seconds | rows/s | rows |")
    print("|---|---:|---:|---|")
    for label, seconds, counts in results:
        print(f"| {label} | {seconds:.1f} | {args.rows / seconds:.0f} | {counts} |")
    print("\nWhere a new row's time goes (in-process, ms per row; look-ups and Bundles: every row of the file, "
          "checks: mean of 200 rows): " +
          ", ".join(f"{label} {ms:.1f}" for label, ms in stages))


if __name__ == "__main__":
    main()
