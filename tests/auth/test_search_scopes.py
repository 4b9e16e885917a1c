"""Chains and ``_has`` search other types: the scopes must allow searching those too."""

from __future__ import annotations

import pytest

from fhir_server.auth.identity import Identity
from fhir_server.auth.permissions import authorize_search
from fhir_server.errors import Forbidden


@pytest.mark.parametrize(("res_type", "query", "scopes", "allowed"), [
    ("Observation", "code=http://loinc.org|85354-9", "system/Observation.s", True),
    ("Observation", "subject:Patient.name=王", "system/Observation.s", False),
    ("Observation", "subject:Patient.name=王", "system/Observation.s system/Patient.s", True),
    ("Observation", "subject:Patient.organization.name=人民医院", "system/Observation.s system/Patient.s", False),
    ("Observation", "subject:Patient.organization.name=人民医院",
     "system/Observation.s system/Patient.s system/Organization.s", True),
    ("Patient", "_has:Observation:subject:code=http://loinc.org|85354-9", "system/Patient.rs", False),
    ("Patient", "_has:Observation:subject:code=http://loinc.org|85354-9", "system/Patient.rs system/Observation.s", True),
    ("Patient", "_has:Observation:subject:_has:Provenance:target:agent=Practitioner/1",
     "system/Patient.s system/Observation.s", False),
    ("Patient", "_has:Observation:subject:_has:Provenance:target:agent=Practitioner/1", "system/*.s", True),
])
def test_chains_and_has_need_search_on_the_types_they_reach(server, res_type, query, scopes, allowed):
    name, _, value = query.partition("=")
    request = server.search.parse(res_type, [(name, value)], strict=True)
    identity = Identity("client", "Organization/x", tuple(scopes.split()))
    if allowed:
        authorize_search(identity, request)
    else:
        with pytest.raises(Forbidden):
            authorize_search(identity, request)
