"""SMART scope grammar and the narrowing of requested scopes to a client's allowed scopes."""

from __future__ import annotations

import pytest

from fhir_server.auth.identity import Identity, Scope, grant_scopes


@pytest.mark.parametrize(("text", "actions"), [
    ("system/Observation.rs", "rs"),
    ("user/*.cruds", "cruds"),
    ("patient/Patient.read", "rs"),     # v1 read = read + search
    ("system/*.write", "cud"),          # v1 write = create, update, delete
    ("system/*.*", "cruds"),
])
def test_v1_and_v2_scopes_parse_to_actions(text, actions):
    assert Scope.parse(text).actions == frozenset(actions)


@pytest.mark.parametrize("text", [
    "openid", "launch/patient", "fhirUser", "system/Observation", "other/Patient.rs",
    "system/Patient.xyz", "system/Observation.rs?category=laboratory",  # query restriction: grants nothing
])
def test_other_or_unsupported_scopes_grant_nothing(text):
    assert Scope.parse(text) is None
    assert not Identity("c", None, (text,)).allows("Observation", "r")


@pytest.mark.parametrize(("requested", "allowed", "granted"), [
    (["system/Observation.rs"], ["system/*.cruds"], ["system/Observation.rs"]),
    (["system/*.rs"], ["system/Observation.cruds"], ["system/Observation.rs"]),
    (["system/*.cruds"], ["system/Patient.rs", "system/Observation.c"],
     ["system/Patient.rs", "system/Observation.c"]),
    (["system/Patient.read"], ["system/*.*"], ["system/Patient.read"]),        # v1 kept as asked
    (["system/Patient.*"], ["system/Patient.rs"], ["system/Patient.rs"]),
    (["user/Patient.rs"], ["system/*.cruds"], []),                             # other context
    (["system/Patient.d"], ["system/Patient.rs"], []),
    (["openid", "system/Patient.rs"], ["system/Patient.rs"], ["system/Patient.rs"]),
    (["system/AuditEvent.rs"], ["system/*.cruds"], []),            # an auditor is registered as one
    (["system/AuditEvent.rs"], ["system/AuditEvent.rs"], ["system/AuditEvent.rs"]),
    (["system/*.rs"], ["system/*.rs"], ["system/*.rs"]),
])
def test_requested_scopes_are_narrowed_to_the_allowed_ones(requested, allowed, granted):
    assert grant_scopes(requested, allowed) == granted
