"""Write generated demo resources through the resource service, one transaction per batch.

``load_county`` can spread the residents over several processes (``jobs``): each checks and
indexes its resources while the others write, so a large county loads faster on several
cores. The network is written first and the self-management groups last, by this process;
every process replays the (cheap, deterministic) generator and writes its share of residents.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable

from fhir_server.auth.identity import SYSTEM
from fhir_server.demo.county import generate_county


def write_batch(server, batch: list[dict]) -> int:
    """Write ``batch`` in one transaction, checked and indexed before the transaction opens."""
    prepared = [server.resources.prepare(resource) for resource in batch]
    with server.db.write() as conn:
        for item in prepared:
            server.resources.create(item, res_id=item.resource["id"], conn=conn, identity=SYSTEM)
    return len(batch)


def load_county(server, patients: int, seed: int, jobs: int = 1,
                progress: Callable[[int], None] = lambda residents: None) -> int:
    """Write a county of ``patients`` residents; returns the number of resources written.

    ``progress`` is called with the number of residents written so far.
    """
    jobs = max(1, jobs)
    written = 0
    batches = generate_county(patients, seed=seed)
    written += write_batch(server, next(batches))  # the network, before any resident
    if jobs == 1:
        for index, batch in enumerate(batches, start=1):
            written += write_batch(server, batch)
            progress(min(index, patients))
        return written
    context = multiprocessing.get_context("spawn")  # a fresh process: no inherited connections
    residents, resources = context.Value("q", 0), context.Value("q", 0)
    workers = [context.Process(target=_write_share, name=f"demo-loader-{job}",
                               args=(server.settings, patients, seed, jobs, job, residents, resources))
               for job in range(jobs)]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        progress(residents.value)
        time.sleep(0.2)
    failed = [worker.name for worker in workers if worker.exitcode != 0]
    if failed:
        raise RuntimeError(f"demo loading failed in {', '.join(failed)} (see the error above)")
    progress(residents.value)
    written += resources.value
    for index, batch in enumerate(batches, start=1):
        if index > patients:  # the groups, once every member is written
            written += write_batch(server, batch)
    return written


def _write_share(settings, patients: int, seed: int, jobs: int, job: int, residents, resources) -> None:
    """One loader process: the residents whose number is ``job`` modulo ``jobs``."""
    from fhir_server.server import start_server

    server = start_server(settings)
    try:
        for index, batch in enumerate(generate_county(patients, seed=seed)):
            if 1 <= index <= patients and index % jobs == job:
                count = write_batch(server, batch)
                with residents.get_lock():
                    residents.value += 1
                with resources.get_lock():
                    resources.value += count
    finally:
        server.close()
