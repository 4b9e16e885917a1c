"""The prepared query for identifier-style criteria (``SearchCompiler.exact_tokens``).

Conditional creates and updates by ``identifier=system|value`` take this path instead of the
general compiler; it must find exactly what the general query finds, on the real database.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from sqlalchemy import select

from fhir_server.auth.identity import SYSTEM
from fhir_server.storage.schema import resource

RID = "urn:oid:2.16.156.10011.1.3"
MRN = "https://county-hospital.example.org/mrn"
LOINC = "http://loinc.org"
LONG = "9" * 300  # longer than the index keeps: clipped alike on both sides


def _patient(*identifiers: tuple[str, str]) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": s, "value": v} for s, v in identifiers]}


def _blood_pressure() -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "component": [{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                           "valueQuantity": {"value": 150, "unit": "mmHg"}}]}


@pytest.fixture
def stored(server) -> dict[str, str]:
    create = server.resources.create
    ids = {
        "zhang": create(_patient((RID, "43052319580312001X"), (MRN, "M1")), identity=SYSTEM).resource["id"],
        "li": create(_patient((RID, "430523196001010027")), identity=SYSTEM).resource["id"],
        "twin": create(_patient((MRN, "SHARED")), identity=SYSTEM).resource["id"],
        "twin2": create(_patient((MRN, "SHARED")), identity=SYSTEM).resource["id"],
        "long": create(_patient((MRN, LONG)), identity=SYSTEM).resource["id"],
        "gone": create(_patient((MRN, "DELETED")), identity=SYSTEM).resource["id"],
        "bp": create(_blood_pressure(), identity=SYSTEM).resource["id"],
    }
    server.resources.delete("Patient", ids["gone"], identity=SYSTEM)
    return ids


def _general(server, rtype: str, criteria: str) -> list[str]:
    request = server.search.parse(rtype, parse_qsl(criteria), strict=True)
    with server.db.read() as conn:
        query = select(resource.c.res_id).where(server.search.compiler.where(request, conn=conn)).limit(2)
        return sorted(row.res_id for row in conn.execute(query))


def _exact(server, rtype: str, criteria: str) -> list[str] | None:
    prepared = server.search.compiler.exact_tokens(server.search.parse(rtype, parse_qsl(criteria), strict=True))
    if prepared is None:
        return None
    query, values = prepared
    with server.db.read() as conn:
        return sorted(row.res_id for row in conn.execute(query, values))


@pytest.mark.parametrize(("rtype", "criteria", "expected"), [
    ("Patient", f"identifier={RID}|43052319580312001X", ["zhang"]),
    ("Patient", f"identifier={MRN}|M1", ["zhang"]),
    ("Patient", f"identifier={RID}|M1", []),  # the value under another system
    ("Patient", f"identifier={RID}|43052319580312001X,{RID}|430523196001010027", ["li", "zhang"]),
    ("Patient", f"identifier={MRN}|SHARED", ["twin", "twin2"]),  # two: the caller's MultipleMatches
    ("Patient", f"identifier={MRN}|{LONG}", ["long"]),
    ("Patient", f"identifier={MRN}|DELETED", []),
    ("Observation", f"combo-code={LOINC}|8480-6", ["bp"]),  # served by code's and component-code's rows
    ("Observation", f"combo-code={LOINC}|85354-9", ["bp"]),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_the_prepared_query_finds_what_the_general_query_finds(server, stored, rtype, criteria, expected):
    names = {v: k for k, v in stored.items()}
    exact = _exact(server, rtype, criteria)
    assert exact is not None
    assert sorted(names[i] for i in exact) == sorted(expected)
    assert exact == _general(server, rtype, criteria)
    with server.db.read() as conn:  # and find_ids (the conditional interactions) takes it
        assert sorted(server.search.find_ids(conn, rtype, parse_qsl(criteria), SYSTEM)) == exact


@pytest.mark.parametrize("criteria", [
    "identifier=43052319580312001X",  # no system
    f"identifier={RID}|",  # a whole system
    "identifier=|43052319580312001X",  # no system at all
    "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|M1",
    f"identifier={MRN}|M\\|1",  # an escaped bar
    f"identifier={RID}|43052319580312001X&gender=male",  # a second parameter
    f"subject:Patient.identifier={RID}|43052319580312001X",  # a chain
    "name=张",  # not a token
])
def test_other_criteria_take_the_general_path(server, criteria):
    rtype = "Observation" if criteria.startswith("subject") else "Patient"
    assert server.search.compiler.exact_tokens(server.search.parse(rtype, parse_qsl(criteria), strict=True)) is None
