"""Concurrent writes: updates of one resource queue up; a lost race is a 409, never a 500."""

from __future__ import annotations

import threading

from fhir_server.storage.store import ResourceStore


def test_concurrent_updates_of_one_resource_all_succeed_in_order(fhir):
    created = fhir.create({"resourceType": "Patient", "gender": "female"})
    statuses = []

    def update(i: int) -> None:
        body = {**created, "birthDate": f"19{50 + i}-01-01"}
        statuses.append(fhir.put(f"Patient/{created['id']}", json=body).status_code)

    threads = [threading.Thread(target=update, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 8
    history = fhir.get(f"Patient/{created['id']}/_history").json()
    assert sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"]) == list(range(1, 10))


def test_a_create_that_loses_a_race_for_the_same_id_is_409(fhir, monkeypatch):
    assert fhir.put("Patient/race-1", json={"resourceType": "Patient", "id": "race-1"}).status_code == 201
    # the second request read "no such resource" just before the first one committed
    original = ResourceStore.current
    monkeypatch.setattr(ResourceStore, "current",
                        lambda self, conn, t, i, **kw: None if i == "race-1" else original(self, conn, t, i, **kw))
    response = fhir.put("Patient/race-1", json={"resourceType": "Patient", "id": "race-1", "gender": "male"})
    assert response.status_code == 409
    assert response.json()["issue"][0]["code"] == "conflict"
    monkeypatch.undo()
    assert "gender" not in fhir.get("Patient/race-1").json()
