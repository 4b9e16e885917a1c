"""The access model at service level: patient-scoped and unbound callers, the relationships that
make an organisation responsible for a patient, and ``$reindex`` rebuilding the access tables."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select

from fhir_server.auth.identity import SYSTEM, Identity
from fhir_server.errors import Forbidden, NotFound
from fhir_server.storage.access import ACCESS_TABLES, access_resource
from tests.access.conftest import identity, observation

PATIENT_APP = Identity("phone-app", None, ("patient/*.rs",), patient="Patient/p-a2")
UNBOUND = Identity("terminology-loader", None, ("system/*.cruds",))


def ids(server, who: Identity, rtype: str, pairs=()) -> set[str]:
    result = server.search.search(server.search.parse(rtype, list(pairs)), identity=who)
    return {m.res_id for m in result.matches}


def test_a_patient_scoped_caller_sees_only_that_patients_compartment(server, county):
    assert ids(server, PATIENT_APP, "Patient") == {"p-a2"}
    assert ids(server, PATIENT_APP, "Observation") == {"obs-a2"}
    assert ids(server, PATIENT_APP, "Organization") >= {"vc-a2", "vc-b1"}  # not patient data
    with pytest.raises(NotFound):
        server.resources.read("Observation", "obs-a1", identity=PATIENT_APP)
    with pytest.raises(Forbidden):
        server.resources.create(observation("x", "p-a1"), identity=Identity(
            "phone-app", None, ("patient/*.cruds",), patient="Patient/p-a2"))


def test_a_caller_bound_to_no_organisation_sees_no_patient_data(server, county):
    assert ids(server, UNBOUND, "Patient") == set()
    assert ids(server, UNBOUND, "Observation") == set()
    assert "hospital" in ids(server, UNBOUND, "Organization")
    with pytest.raises(Forbidden):
        server.resources.create(observation("x", "p-a1"), identity=UNBOUND)
    server.resources.create({"resourceType": "Practitioner", "name": [{"text": "x"}]}, identity=UNBOUND)


@pytest.mark.parametrize(("resource", "grants"), [
    ({"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": "Patient/p-b1"},
      "requester": {"reference": "Organization/vc-b1"}, "owner": {"reference": "Organization/th-a"}}, True),
    ({"resourceType": "Task", "status": "completed", "intent": "order", "for": {"reference": "Patient/p-b1"},
      "owner": {"reference": "Organization/th-a"}}, False),
    ({"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/p-b1"},
      "contributor": [{"reference": "Organization/th-a"}]}, True),
    ({"resourceType": "CareTeam", "status": "active", "subject": {"reference": "Patient/p-b1"},
      "participant": [{"member": {"reference": "Organization/th-a"}}]}, True),
    ({"resourceType": "EpisodeOfCare", "status": "active", "patient": {"reference": "Patient/p-b1"},
      "managingOrganization": {"reference": "Organization/th-a"}}, True),
    ({"resourceType": "Encounter", "status": "in-progress", "subject": {"reference": "Patient/p-b1"},
      "class": {"code": "AMB"}, "serviceProvider": {"reference": "Organization/th-a"}}, True),
    ({"resourceType": "Encounter", "status": "finished", "subject": {"reference": "Patient/p-b1"},
      "class": {"code": "AMB"}, "serviceProvider": {"reference": "Organization/th-a"}}, False),
])
def test_care_relationships_make_an_organisation_responsible(server, county, resource, grants):
    township = identity("township")
    assert "p-b1" not in ids(server, township, "Patient")
    created = server.resources.create(resource, identity=identity("other_village")).resource
    assert ("p-b1" in ids(server, township, "Patient")) is grants
    server.resources.delete(created["resourceType"], created["id"], identity=identity("county"))
    assert "p-b1" not in ids(server, township, "Patient")


def test_reindex_rebuilds_the_access_tables(fhir, server, county):
    village = identity("village")
    with server.db.write() as conn:
        for table in ACCESS_TABLES:
            conn.execute(delete(table))
    assert ids(server, village, "Patient") == set()  # fail closed: unknown holders hide patients
    assert fhir.post("$reindex").status_code == 200
    assert ids(server, village, "Patient") == {"p-a1"}
    assert ids(server, identity("cdc"), "Observation") == {"obs-a1", "obs-a2", "obs-b1"}
    with server.db.read() as conn:
        rows = conn.execute(select(func.count()).select_from(access_resource)).scalar_one()
    assert rows == 3 * 4  # each patient and its three resources


def test_a_revived_resource_belongs_to_its_new_patient(server, county):
    server.resources.delete("Observation", "obs-a1", identity=SYSTEM)
    revived = {**observation("obs-a1", "p-b1")}
    server.resources.update("Observation", "obs-a1", revived, identity=SYSTEM)
    assert "obs-a1" in ids(server, identity("other_village"), "Observation")
    assert "obs-a1" not in ids(server, identity("village"), "Observation")
