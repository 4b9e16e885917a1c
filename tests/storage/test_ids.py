"""Server-assigned ids are UUIDs version 7: time-ordered, so new index keys land together."""

from __future__ import annotations

import time
import uuid

from fhir_server.fhir.models import is_valid_id
from fhir_server.storage.ids import new_resource_id


def test_an_id_is_a_valid_fhir_id_and_a_version_7_uuid():
    rid = new_resource_id()
    parsed = uuid.UUID(rid)
    assert str(parsed) == rid and is_valid_id(rid)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_an_id_starts_with_the_time_it_was_made():
    before = time.time_ns() // 1_000_000
    rid = new_resource_id()
    after = time.time_ns() // 1_000_000
    assert before <= uuid.UUID(rid).int >> 80 <= after


def test_ids_made_later_sort_later_and_ids_made_together_differ():
    first = [new_resource_id() for _ in range(1000)]
    time.sleep(0.002)
    second = new_resource_id()
    assert len(set(first)) == 1000
    assert all(rid < second for rid in first)


def test_the_server_assigns_such_ids(server):
    from fhir_server.auth.identity import SYSTEM

    created = server.resources.create({"resourceType": "Patient"}, identity=SYSTEM).resource
    assert uuid.UUID(created["id"]).version == 7
