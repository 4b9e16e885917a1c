"""How long profile validation takes per resource, by profile, on a generated demo county.

    python profiles/measure_validation.py [--patients 300]

Compiles the profiles and warms the binding cache on a first pass (as a running server does
after its first writes), then validates every resource that claims a county profile five
times and prints the mean, median and 95th percentile per profile in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

from fhir_server.demo import generate_county
from fhir_server.terminology import TerminologyService
from fhir_server.validation import ProfileValidator

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300)
    args = parser.parse_args()
    validator = ProfileValidator.from_directory(ROOT / "profiles" / "local",
                                                TerminologyService.load(ROOT / "terminology"))
    resources = [r for batch in generate_county(args.patients) for r in batch if validator.claimed(r)]
    for resource in resources:  # compile and warm up
        validator.validate(resource)
    timings: dict[str, list[float]] = defaultdict(list)
    for _ in range(5):
        for resource in resources:
            start = time.perf_counter()
            validator.validate(resource)
            timings[validator.claimed(resource)[0].rsplit("/", 1)[-1]].append(time.perf_counter() - start)
    print(f"{'profile':32} {'n':>6} {'mean us':>8} {'p50 us':>8} {'p95 us':>8}")
    for name, values in sorted(timings.items(), key=lambda item: -len(item[1])):
        values.sort()
        print(f"{name:32} {len(values):6d} {statistics.fmean(values) * 1e6:8.0f} "
              f"{values[len(values) // 2] * 1e6:8.0f} {values[int(len(values) * 0.95)] * 1e6:8.0f}")
    every = [v for values in timings.values() for v in values]
    print(f"{'all':32} {len(every):6d} {statistics.fmean(every) * 1e6:8.0f}")


if __name__ == "__main__":
    main()
