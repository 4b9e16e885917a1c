"""A synthetic county chronic-disease network as FHIR R4 resources, deterministic per seed.

``generate_county(patients, seed)`` yields batches of plain FHIR JSON dicts with
client-assigned ids and references of the form ``"Type/id"``, in dependency order:

1. the network: the county health bureau, the county hospital (lead of the medical
   community) with its laboratory, the county CDC, the township health centres and the
   village clinics (``Organization``, linked by ``partOf``), their ``Location``\\s, and a
   guide doctor per township and a village doctor per clinic (``Practitioner`` +
   ``PractitionerRole``);
2. one batch per resident (``pat-000001`` ...): the ``Patient`` and, for a managed
   patient, their ``Condition``\\s, ``CarePlan``, follow-up ``Encounter``\\s with their
   ``Observation``\\s, and yearly lab ``DiagnosticReport``\\s with their results;
3. the self-management ``Group``\\s, whose members were all in earlier batches.

Every reference points at a resource in an earlier batch or earlier in the same batch, so
a writer can commit batch by batch. The generator keeps only small counters between
batches. All randomness comes from one ``random.Random(seed)`` and all dates from the fixed
reference date (``CountyParameters.reference_date``, 2026-06-30).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from fhir_server.demo.network import build_network
from fhir_server.demo.parameters import DEFAULT_PARAMETERS, CountyParameters
from fhir_server.demo.resident import ResidentGenerator
from fhir_server.demo.self_management_group import SelfManagementGroups

__all__ = ["generate_county"]


def generate_county(
    patients: int, seed: int = 2026, parameters: CountyParameters = DEFAULT_PARAMETERS
) -> Iterator[list[dict]]:
    """Yield batches of resources: the network, then one batch per patient, then the groups.

    Each batch is a list of resource dicts with client-assigned ``id``\\s and references
    ("Patient/<id>") that resolve within the batch or to an earlier one. Same ``patients``,
    ``seed`` and ``parameters`` give identical output on any day.
    """
    if patients < 0:
        raise ValueError("patients must be >= 0")
    rng = random.Random(seed)
    network = build_network(rng, parameters)
    yield network.resources
    groups = SelfManagementGroups(rng, network, parameters)
    residents = ResidentGenerator(rng, network, parameters)
    for index in range(1, patients + 1):
        resident = residents.resident(index)
        groups.offer(resident)
        yield resident.resources
    group_resources = groups.resources()
    if group_resources:
        yield group_resources
