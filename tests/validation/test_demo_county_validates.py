"""The demo county claims the county profiles and conforms to them."""

from __future__ import annotations

from collections import Counter

import orjson

from fhir_server.auth.identity import Identity
from fhir_server.demo import generate_county
from fhir_server.demo.network import CDC_ID, LAB_ID
from fhir_server.demo.loader import write_batch


def test_generated_county_validates_with_no_errors(server):
    resources = [r for batch in generate_county(80, seed=11) for r in batch]
    claimed = Counter()
    errors = []
    for resource in resources:
        profiles = server.validator.claimed(resource)
        claimed.update(p.rsplit("/", 1)[-1] for p in profiles)
        errors += [(resource["id"], i.diagnostics) for i in server.validator.validate(resource)
                   if i.severity == "error"]
    assert errors == []
    assert {"county-patient", "county-organization", "county-practitioner", "county-practitioner-role",
            "county-condition", "county-care-plan", "county-follow-up-encounter", "county-blood-pressure",
            "county-body-weight", "county-heart-rate", "county-fasting-glucose", "county-hba1c", "county-lipid",
            "county-creatinine", "county-diagnostic-report", "county-self-management-group"} <= set(claimed)
    unclaimed = Counter(r["resourceType"] for r in resources if not server.validator.claimed(r))
    assert set(unclaimed) <= {"Location", "Encounter"}  # places, and the screening visits


def test_the_demo_loads_with_validation_enforced(server):
    assert server.settings.validation == "enforce"
    written = sum(write_batch(server, batch) for batch in generate_county(10, seed=3))
    with server.db.read() as conn:
        assert server.store.count_live(conn) == written



def test_the_demo_laboratory_and_cdc_see_the_whole_county(server):
    """The lab and the CDC are outside the clinics' tree; their access-scope extension (a county
    profile extension, so the demo still validates) opens every patient to them, while a
    village clinic sees only its own."""
    for batch in generate_county(12, seed=5):
        write_batch(server, batch)
    everyone = _patients_seen_by(server, Identity("system", None, ("system/*.rs",), unrestricted=True))
    clinics = {orjson.loads(p.content)["managingOrganization"]["reference"] for p in everyone.values()}
    assert len(everyone) == 12 and len(clinics) > 1
    for org in (LAB_ID, CDC_ID):
        assert _patients_seen_by(server, _bound_to(f"Organization/{org}")).keys() == everyone.keys()
    one_clinic = sorted(clinics)[0]
    assert 0 < len(_patients_seen_by(server, _bound_to(one_clinic))) < len(everyone)


def _bound_to(org: str) -> Identity:
    return Identity(f"client of {org}", org, ("system/*.rs",))


def _patients_seen_by(server, identity: Identity) -> dict:
    request = server.search.parse("Patient", [("_count", "1000")])
    return {p.res_id: p for p in server.search.search(request, identity=identity).matches}
