"""The demo county claims the county profiles and conforms to them."""

from __future__ import annotations

from collections import Counter

from fhir_server.demo import generate_county
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
