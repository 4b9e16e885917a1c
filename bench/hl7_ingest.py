"""Benchmark: sustained ORU^R01 ingest over MLLP, with ACKs, from several concurrent connections.

    python bench/hl7_ingest.py --engine sqlite --messages 1500 --connections 4 --workers 2
    python bench/hl7_ingest.py --engine both

For each engine it starts the real server (``python -m fhir_server serve --workers N --mllp-port P``,
every worker taking MLLP connections) on a fresh database, opens ``--connections`` MLLP connections (each a different sending facility,
as the township LIS of a county would be), sends ORU^R01 messages with 5 OBX results each
(every message a new patient), each connection waiting for its ACK before the next message
(MLLP is synchronous), and measures messages per second and the ACK latency (send to ACK
received) p50 / p99. Every ACK must be AA. Beside it: the raw parse rate of each parser
(``bench/hl7_parse.py``). Prints a table and appends it to ``bench/RESULTS.md`` (``--no-record``:
print only). PostgreSQL runs on a throwaway cluster started by ``.ci/postgres.sh``
(``FHIR_CI_PG_PORT`` / ``FHIR_CI_PG_DIR`` choose its port and directory).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "adapters" / "hl7v2")]

from bench.databases import (  # noqa: E402
    OUT, free_port, machine, postgres_url, sqlite_url, stop_postgres, wait_until_serving)

from hl7_inbound_messages import oru_bytes  # noqa: E402

from adapters.hl7v2.mllp import MllpClient  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402


class Server:
    """``python -m fhir_server serve --mllp-port`` on loopback ports."""

    def __init__(self, database_url: str, workers: int, mllp_threads: int):
        self.port, self.mllp_port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FHIR_MLLP_THREADS": str(mllp_threads)}
        self.log = open(OUT / "hl7-ingest-server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fhir_server", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--mllp-port", str(self.mllp_port), "--database-url", database_url, "--workers", str(workers)],
            cwd=OUT, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_until_serving(f"http://127.0.0.1:{self.port}/fhir", self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Connection(threading.Thread):
    def __init__(self, port: int, number: int, messages: list[bytes], start: threading.Barrier):
        super().__init__(daemon=True)
        self.port, self.messages, self.start_barrier = port, messages, start
        self.latencies: list[float] = []
        self.failures = 0

    def run(self) -> None:
        with MllpClient("127.0.0.1", self.port, timeout=120) as client:
            self.start_barrier.wait()
            for raw in self.messages:
                sent = time.perf_counter()
                ack = client.send(raw)
                self.latencies.append(time.perf_counter() - sent)
                if b"MSA|AA|" not in ack:
                    self.failures += 1


def messages_for(connection: int, count: int, run: str) -> list[bytes]:
    facility = f"乡镇卫生院{connection:02d}"
    return [oru_bytes(f"B{run}-{connection}-{n:05d}", sender=("LIS", facility), patient=connection * 100_000 + n,
                      family="张", given="建国")
            for n in range(count)]


def measure(database_url: str, connections: int, total: int, warmup: int, workers: int, mllp_threads: int) -> dict:
    server = Server(database_url, workers, mllp_threads)
    try:
        run = datetime.now(UTC).strftime("%H%M%S")
        per_connection = max(1, total // connections)
        # every connection at once, so that every worker has taken some before the measure
        warm = [Connection(server.mllp_port, i, messages_for(i, warmup, "w" + run), threading.Barrier(1))
                for i in range(connections)]
        for c in warm:
            c.start()
        for c in warm:
            c.join()
        barrier = threading.Barrier(connections + 1)
        workers = [Connection(server.mllp_port, i, messages_for(i, per_connection, run), barrier)
                   for i in range(connections)]
        for w in workers:
            w.start()
        barrier.wait()
        started = time.perf_counter()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
    latencies = sorted(x for w in workers for x in w.latencies)
    return {
        "messages": len(latencies),
        "failures": sum(w.failures for w in workers),
        "rate": len(latencies) / elapsed,
        "p50": statistics.quantiles(latencies, n=100)[49] * 1000,
        "p99": statistics.quantiles(latencies, n=100)[98] * 1000,
        "seconds": elapsed,
    }


def stage_costs(n: int = 100) -> dict[str, float]:
    """Milliseconds per ORU^R01 of each pipeline stage, in-process and one at a time, on a fresh
    SQLite file: where a message's time goes. The pipeline's own steps are timed (each wrapped
    by a timer for the length of the measure), so the breakdown follows the pipeline as it is."""
    from adapters.hl7v2 import pipeline as pipeline_module
    from adapters.hl7v2.pipeline import InboundPipeline
    from fhir_server.operations import bundle
    from fhir_server.server import Server

    server = Server(Settings(database_url=sqlite_url("hl7-stages")))
    pipeline = InboundPipeline(server)
    for raw in messages_for(0, 20, "warm"):
        pipeline.receive(raw)
    steps = [(pipeline, "read_header", "read header"), (pipeline.store, "original", "look for an original"),
             (pipeline.spool, "append", "spool raw bytes"),
             (pipeline, "_translate", "translate"), (pipeline_module, "with_known_ids", "look up known ids"),
             (pipeline_module, "build_ack", "build ACK"),
             (bundle, "run_transaction", "run_transaction (+ Provenance, the message's row)")]
    costs = dict.fromkeys((label for _, _, label in steps), 0.0)
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in steps]
    for (owner, name, label), (_, _, original) in zip(steps, originals, strict=True):
        setattr(owner, name, _timed(original, label, costs))
    try:
        started = time.perf_counter()
        for raw in messages_for(1, n, "stages"):
            outcome = pipeline.receive(raw)
            assert outcome.ack_code == "AA", outcome.problems
        total = time.perf_counter() - started
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
        server.close()
    costs["everything else"] = total - sum(costs.values())
    return {label: spent / n * 1000 for label, spent in costs.items()}


def _timed(step, label: str, costs: dict[str, float]):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            costs[label] += time.perf_counter() - started
    return timed


def parse_rates(n: int) -> dict[str, float]:
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        from hl7_parse import parse_rates as rates  # bench/hl7_parse.py (the translation side)
    except ImportError:
        return {}
    return rates(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--messages", type=int, default=1500, help="ORU^R01 messages measured, in all")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (serve --workers)")
    parser.add_argument("--mllp-threads", type=int, default=Settings().mllp_threads,
                        help="threads applying MLLP messages in each worker (FHIR_MLLP_THREADS)")
    parser.add_argument("--no-record", action="store_true", help="print the table only")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    results = {}
    for engine in engines:
        url = sqlite_url("hl7-ingest") if engine == "sqlite" else postgres_url()
        try:
            results[engine] = measure(url, args.connections, args.messages, args.warmup, args.workers,
                                      args.mllp_threads)
        finally:
            if engine == "postgres":
                stop_postgres()
        print(f"{engine}: {results[engine]}", file=sys.stderr)
    rates = parse_rates(300)
    stages = stage_costs()
    table = render(results, rates, stages, args)
    print(table)
    if not args.no_record:
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write("\n" + table)


def render(results: dict, rates: dict[str, float], stages: dict[str, float], args) -> str:
    engines = list(results)
    command = " ".join(["python bench/hl7_ingest.py", *sys.argv[1:]])
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: HL7 v2 ORU^R01 ingest over MLLP",
        "",
        f"Machine: {machine()}. Command: `{command}`",
        "",
        "| measure | " + " | ".join(engines) + " |",
        "|---|" + "---|" * len(engines),
        "| server worker processes (each takes MLLP connections) | " + " | ".join(str(args.workers) for _ in engines)
        + " |",
        "| MLLP threads per worker (applying messages) | " + " | ".join(str(args.mllp_threads) for _ in engines)
        + " |",
        "| connections (one sending facility each) | " + " | ".join(str(args.connections) for _ in engines) + " |",
        "| ORU^R01 messages (5 OBX each), all ACKed AA | "
        + " | ".join(f"{r['messages']:,} ({r['failures']} not AA)" for r in results.values()) + " |",
        "| messages / s | " + " | ".join(f"{r['rate']:.0f}" for r in results.values()) + " |",
        "| ACK latency p50 / p99 (ms) | "
        + " | ".join(f"{r['p50']:.1f} / {r['p99']:.1f}" for r in results.values()) + " |",
    ]
    for name, rate in rates.items():
        lines.append(f"| parse only, {name} (messages / s, one core) | " + " | ".join(f"{rate:.0f}" for _ in engines)
                     + " |")
    lines += ["", "Where one message's time goes (in-process, one at a time, SQLite, ms per ORU^R01): "
              + ", ".join(f"{name} {ms:.2f}" for name, ms in stages.items()) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
