"""Benchmarks of the FHIR server: writes, transaction ingest, typical searches, memory.

    python bench/run.py --patients 10000 --engine sqlite
    python bench/run.py --patients 100000 --engine both

For each engine it loads a synthetic county (``python -m fhir_server demo``) into a fresh
database (SQLite: a copy of the county loaded by the first run with that size, kept in
``bench/out/county-N.sqlite`` with its load time), starts the real server process, drives it over HTTP on loopback and prints a table,
which it also appends to ``bench/RESULTS.md`` with the machine and the command line.
PostgreSQL runs on a throwaway cluster started by ``.ci/postgres.sh``.

Authentication is on, as in production: the benchmark registers a client in the database
(``python -m fhir_server clients add``) and sends its access token with every request. The
written resources claim the county profiles (Patient, blood pressure), so the write figures
include profile validation; the writes are then timed again on a server with validation off.

Single creates are timed after ``--warmup-creates`` untimed ones on the same server, because
what is asked is the rate a server sustains: one just started on a county just copied is slower
for its first thousand or so creates. The rate of those first creates is reported on a row of
its own, so the two can be compared (bench/RESULTS.md, 2026-11-24 04:43 at 100k patients: 684/s
for the first 1,500, then 853/s).
"""

from __future__ import annotations

import argparse
import copy
import http.client
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.databases import (  # noqa: E402
    OUT, ROOT, free_port, machine, postgres_url, sqlite_url, stop_postgres, wait_until_serving)
from fhir_server.identifiers import resident_id  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
EXAMPLES = ROOT / "profiles" / "local" / "examples"
LOINC = "http://loinc.org"
RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"


# ---- the server process ----------------------------------------------------------------------
class ServerProcess:
    def __init__(self, database_url: str, workers: int, credentials: tuple[str, str], validation: str = "enforce"):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        env = {**os.environ, "FHIR_VALIDATION": validation, "FHIR_AUTH_TOKEN_LIFETIME_SECONDS": "86400"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fhir_server", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--database-url", database_url, "--workers", str(workers)],
            cwd=OUT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        )
        wait_until_serving(self.base, self.proc)
        token = httpx.post(self.base.removesuffix("/fhir") + "/auth/token", auth=credentials,
                           data={"grant_type": "client_credentials"}, timeout=30)
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def peak_rss_mib(self) -> float:
        """Peak resident memory (VmHWM) of the server process and its workers."""
        pids = [self.proc.pid] + _children(self.proc.pid)
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                pass
        return total / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def register_client(database_url: str) -> tuple[str, str]:
    """A client with every scope, registered as a deployment would: its id and secret."""
    done = subprocess.run(
        [sys.executable, "-m", "fhir_server", "clients", "add", "--name", "benchmark", "--unrestricted",
         "--scope", "system/*.cruds", "--database-url", database_url, "--json"],
        cwd=OUT, check=True, capture_output=True, text=True)
    printed = orjson.loads(done.stdout)
    return printed["client_id"], printed["client_secret"]


def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(p) for p in out.split()]


# ---- workloads -----------------------------------------------------------------------------
def _example(name: str) -> dict:
    """A valid instance of a county profile (profiles/local/examples), without its id."""
    resource = orjson.loads((EXAMPLES / f"{name}-valid.json").read_bytes())
    del resource["id"]
    return resource


PATIENT = _example("county-patient")
BLOOD_PRESSURE = _example("county-blood-pressure")
del BLOOD_PRESSURE["encounter"]


def patient_body(i: int) -> dict:
    """A county-patient of its own: resident ID (valid check digit), name, sex and birth date vary."""
    sex = "male" if i % 2 else "female"
    birth = date(1940 + i % 50, 1 + i % 12, 1 + i % 28)
    patient = copy.deepcopy(PATIENT)
    patient["identifier"] = [
        {**patient["identifier"][0], "value": resident_id("430530", birth, i % 500, sex)},
        {**patient["identifier"][1], "value": f"430530104108{i:05d}"[-17:]},
    ]
    patient["name"] = [{"use": "official", "text": "李建国", "family": "李", "given": ["建国"]}]
    patient["gender"], patient["birthDate"] = sex, birth.isoformat()
    return patient


def blood_pressure_body(subject: str, k: int) -> dict:
    observation = copy.deepcopy(BLOOD_PRESSURE)
    observation["subject"] = {"reference": subject}
    observation["effectiveDateTime"] = f"2025-{1 + k % 12:02d}-{1 + k % 28:02d}T09:00:00+08:00"
    observation["component"][0]["valueQuantity"]["value"] = 120 + k % 60
    observation["component"][1]["valueQuantity"]["value"] = 70 + k % 40
    return observation


def _post_all(base: str, path: str, bodies: list[bytes], expected: int, auth: dict[str, str]) -> None:
    """One client process: POST each body over one keep-alive connection (http.client costs
    far less CPU per request than httpx, so the server, not the client, is what is measured)."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal", **auth}
    for body in bodies:
        conn.request("POST", f"{url.path}{path}", body=body, headers=headers)
        response = conn.getresponse()
        text = response.read()
        if response.status != expected:
            raise RuntimeError(f"POST {path}: {response.status} {text[:300]!r}")
    conn.close()


def _post_concurrently(server: ServerProcess, path: str, bodies: list[bytes], expected: int, clients: int) -> float:
    """POST all bodies from ``clients`` processes; returns the elapsed seconds."""
    chunks = [bodies[i::clients] for i in range(clients)]
    each = {"base": [server.base] * clients, "path": [path] * clients, "expected": [expected] * clients,
            "auth": [server.headers] * clients}
    with ProcessPoolExecutor(clients) as pool:
        list(pool.map(_post_all, each["base"], each["path"], [[]] * clients, each["expected"], each["auth"]))
        started = time.perf_counter()
        list(pool.map(_post_all, each["base"], each["path"], chunks, each["expected"], each["auth"]))
        return time.perf_counter() - started


def bench_creates(server: ServerProcess, count: int, concurrency: int, first: int = 0) -> float:
    """Single creates over HTTP; returns creates per second."""
    bodies = [orjson.dumps(patient_body(first + i)) for i in range(count)]
    return count / _post_concurrently(server, "/Patient", bodies, 201, concurrency)


def transaction_bundle(n: int, size: int) -> bytes:
    """A transaction of one patient and ``size - 1`` blood-pressure observations."""
    entries = [{"fullUrl": f"urn:uuid:p-{n}", "resource": patient_body(n),
                "request": {"method": "POST", "url": "Patient"}}]
    for k in range(size - 1):
        entries.append({"resource": blood_pressure_body(f"urn:uuid:p-{n}", k),
                        "request": {"method": "POST", "url": "Observation"}})
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def bench_transactions(server: ServerProcess, bundles: int, size: int, concurrency: int, first: int = 0) -> float:
    """Transaction Bundles of ``size`` entries; returns resources per second."""
    bodies = [transaction_bundle(first + i, size) for i in range(bundles)]
    return bundles * size / _post_concurrently(server, "/", bodies, 200, concurrency)


def sample_targets(server: ServerProcess, samples: int, seed: int = 7) -> list[dict]:
    """Patients of the demo county with an identifier, to aim the searches at."""
    rng = random.Random(seed)
    with httpx.Client(base_url=server.base, headers=server.headers, timeout=60) as client:
        total = client.get("/Patient", params={"_summary": "count"}).json()["total"]
        targets = []
        for _ in range(samples):
            offset = rng.randrange(max(total, 1))
            bundle = client.get("/Patient", params={"_count": 1, "_offset": offset,
                                                   "identifier": f"{RESIDENT_ID}|"}).json()
            for entry in bundle.get("entry", []):
                p = entry["resource"]
                ident = next(i["value"] for i in p["identifier"] if i.get("system") == RESIDENT_ID)
                targets.append({"id": p["id"], "identifier": ident})
    return targets


SEARCHES = {
    "patient by identifier": lambda t: ("/Patient", {"identifier": f"{RESIDENT_ID}|{t['identifier']}"}),
    "patient's BP by code and date": lambda t: ("/Observation", {
        "subject": f"Patient/{t['id']}", "code": f"{LOINC}|85354-9", "date": ["ge2025-07-01", "lt2026-07-01"]}),
    "code + value-quantity": lambda t: ("/Observation", {
        "code": f"{LOINC}|14771-0,{LOINC}|1558-6",
        "value-quantity": "gt16.7|http://unitsofmeasure.org|mmol/L", "_count": "20"}),
    "patient _revinclude Observation": lambda t: ("/Patient", {
        "_id": t["id"], "_revinclude": "Observation:subject"}),
    "chained subject identifier": lambda t: ("/Observation", {
        "subject:Patient.identifier": f"{RESIDENT_ID}|{t['identifier']}", "code": f"{LOINC}|85354-9"}),
}


def bench_searches(server: ServerProcess, targets: list[dict], rounds: int) -> dict[str, tuple[float, float, float, float]]:
    """Latency percentiles (ms) of each typical search, and mean results per search."""
    results = {}
    with httpx.Client(base_url=server.base, headers=server.headers, timeout=60) as client:
        for name, build in SEARCHES.items():
            for t in targets[:5]:  # warm-up
                path, params = build(t)
                client.get(path, params=params)
            latencies, found = [], []
            for i in range(rounds):
                path, params = build(targets[i % len(targets)])
                started = time.perf_counter()
                response = client.get(path, params=params)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: {response.status_code} {response.text[:300]}")
                found.append(len(response.json().get("entry", [])))
            qs = statistics.quantiles(latencies, n=100)
            results[name] = (qs[49], qs[94], qs[98], statistics.mean(found))
    return results


# ---- one engine ----------------------------------------------------------------------------
def load_county(url: str, patients: int) -> float:
    """Load a demo county of ``patients`` into ``url`` (two loader processes); returns the seconds."""
    print(f"loading {patients} demo patients into {url} ...", flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fhir_server", "demo", str(patients), "--database-url", url, "--jobs", "2"],
                   cwd=OUT, check=True, env={**os.environ, "FHIR_DATABASE_URL": url})
    return time.perf_counter() - started


def sqlite_county(patients: int) -> tuple[str, float]:
    """A fresh copy of the SQLite demo county of ``patients`` and the seconds its load took.

    The county is loaded once and kept as ``bench/out/county-N.sqlite`` (a 100k county takes a
    long time to load); each run works on a copy, so every run starts from the same data.
    """
    kept = OUT / f"county-{patients}.sqlite"
    record = OUT / f"county-{patients}.json"
    if not (kept.exists() and record.exists()):
        seconds = load_county(sqlite_url(f"county-{patients}"), patients)
        with sqlite3.connect(kept) as conn:  # the WAL into the file, so that one file is the county
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        record.write_text(orjson.dumps({"patients": patients, "load_seconds": seconds}).decode())
    url = sqlite_url("bench")
    shutil.copyfile(kept, OUT / "bench.sqlite")
    return url, orjson.loads(record.read_bytes())["load_seconds"]


def run_engine(engine: str, args) -> dict:
    if engine == "sqlite":
        url, load_seconds = sqlite_county(args.patients)
    else:
        url = postgres_url()
        load_seconds = load_county(url, args.patients)
    workers = args.workers or 2
    credentials = register_client(url)
    try:
        server = ServerProcess(url, workers, credentials)
        try:
            with httpx.Client(base_url=server.base, headers=server.headers, timeout=60) as client:
                stored = {t: client.get(f"/{t}", params={"_summary": "count"}).json()["total"]
                          for t in ("Patient", "Observation")}
            targets = sample_targets(server, 50)
            searches = bench_searches(server, targets, args.rounds)
            first_creates = bench_creates(server, args.warmup_creates, args.concurrency, first=2 * args.creates)
            creates = bench_creates(server, args.creates, args.concurrency)
            ingest = bench_transactions(server, args.bundles, args.bundle_size, args.concurrency)
            peak = server.peak_rss_mib()
        finally:
            server.stop()
        print(f"[{engine}] the writes again, validation off ...", flush=True)
        unchecked = ServerProcess(url, workers, credentials, validation="off")
        try:
            bench_creates(unchecked, args.warmup_creates, args.concurrency, first=2 * args.creates + args.warmup_creates)
            creates_off = bench_creates(unchecked, args.creates, args.concurrency, first=args.creates)
            ingest_off = bench_transactions(unchecked, args.bundles, args.bundle_size, args.concurrency,
                                            first=args.bundles)
        finally:
            unchecked.stop()
    finally:
        if engine == "postgres":
            stop_postgres()
    return {"engine": engine, "workers": workers, "stored": stored, "load_seconds": load_seconds,
            "first_creates": first_creates, "creates": creates, "ingest": ingest, "creates_off": creates_off, "ingest_off": ingest_off,
            "searches": searches, "peak_mib": peak}


def render(results: list[dict], args) -> str:
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.patients} demo patients",
        "",
        f"Machine: {machine()}. Command: `python bench/run.py {' '.join(sys.argv[1:])}`",
        "",
        "| measure | " + " | ".join(r["engine"] for r in results) + " |",
        "|---|" + "---|" * len(results),
        "| server workers | " + " | ".join(str(r["workers"]) for r in results) + " |",
        "| Patients / Observations stored | " + " | ".join(
            f"{r['stored']['Patient']:,} / {r['stored']['Observation']:,}" for r in results) + " |",
        "| demo load through the service layer (s) | " + " | ".join(f"{r['load_seconds']:.0f}" for r in results) + " |",
        f"| single creates over HTTP (/s, {args.concurrency} client processes; after {args.warmup_creates} untimed) | "
        + " | ".join(f"{r['creates']:.0f}" for r in results) + " |",
        f"| the first {args.warmup_creates} single creates after the server started (/s) | "
        + " | ".join(f"{r['first_creates']:.0f}" for r in results) + " |",
        f"| transaction ingest (resources/s, bundles of {args.bundle_size}) | " + " | ".join(f"{r['ingest']:.0f}" for r in results) + " |",
        "| single creates, validation off (/s) | " + " | ".join(f"{r['creates_off']:.0f}" for r in results) + " |",
        "| transaction ingest, validation off (resources/s) | " + " | ".join(f"{r['ingest_off']:.0f}" for r in results) + " |",
    ]
    for name in SEARCHES:
        lines.append(f"| {name}: p50 / p95 / p99 ms (mean hits) | " + " | ".join(
            "{:.1f} / {:.1f} / {:.1f} ({:.1f})".format(*r["searches"][name]) for r in results) + " |")
    lines.append("| server peak memory (MiB, all workers) | " + " | ".join(f"{r['peak_mib']:.0f}" for r in results) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=10_000, help="demo patients to load (default 10000)")
    parser.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--creates", type=int, default=3000, help="single creates to time")
    parser.add_argument("--warmup-creates", type=int, default=1500, help="untimed single creates before them")
    parser.add_argument("--bundles", type=int, default=60, help="transaction bundles to time")
    parser.add_argument("--bundle-size", type=int, default=100, help="entries per transaction bundle")
    parser.add_argument("--rounds", type=int, default=300, help="requests per typical search")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent HTTP clients for writes")
    parser.add_argument("--workers", type=int, default=0, help="server worker processes (default 2: one per core of the reference machine)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    results = [run_engine(e, args) for e in engines]
    table = render(results, args)
    print("\n" + table)
    if not args.no_record:
        if not RESULTS.exists():
            RESULTS.write_text("# Benchmark results\n\nAppended by `python bench/run.py`; newest last.\n\n")
        with RESULTS.open("a") as f:
            f.write(table + "\n")
    if shutil.which("pgrep") is None:
        print("note: pgrep not found; peak memory counts only the main server process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
